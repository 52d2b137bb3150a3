"""Kernel Inception Distance: unbiased MMD² with a cubic polynomial kernel, averaged over subsets.

Hand-written rather than taken from torchmetrics' `KernelInceptionDistance` because facegan computes
KID from *cached* real features and from arbitrary (pluggable) feature extractors, and wants subset
sampling from its own seeded generator (torchmetrics draws from torch's global RNG, which would
perturb a training run that evaluates mid-way).
"""

from __future__ import annotations

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor


def _as_f64_tensor(x: ArrayLike) -> torch.Tensor:
    t = x.detach() if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    return t.to(torch.float64)


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """k(x, y) = (x·y / d + 1)³ for all row pairs: (n, d), (m, d) → (n, m)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: ArrayLike, y: ArrayLike) -> float:
    """Unbiased MMD²(P, Q) estimate from x ~ P (m, d) and y ~ Q (n, d), polynomial kernel.

    The within-set sums leave out the diagonal k(x_i, x_i), which is what makes the estimate
    unbiased (and why it can be slightly negative when P = Q).
    """
    xt, yt = _as_f64_tensor(x), _as_f64_tensor(y)
    m, n = xt.shape[0], yt.shape[0]
    if m < 2 or n < 2:
        raise ValueError(f"need at least 2 samples per set, got {m} and {n}")
    k_xx, k_yy = polynomial_kernel(xt, xt), polynomial_kernel(yt, yt)
    k_xy = polynomial_kernel(xt, yt)
    sum_xx = k_xx.sum() - k_xx.diagonal().sum()
    sum_yy = k_yy.sum() - k_yy.diagonal().sum()
    return float(sum_xx / (m * (m - 1)) + sum_yy / (n * (n - 1)) - 2.0 * k_xy.sum() / (m * n))


def kid(
    feats_real: ArrayLike,
    feats_fake: ArrayLike,
    subsets: int = 100,
    subset_size: int = 1000,
    *,
    seed: int = 0,
) -> tuple[float, float]:
    """(mean, std) of the unbiased polynomial-kernel MMD² over `subsets` random subset pairs.

    Each subset draws `subset_size` rows without replacement from each feature set (N, D), using
    a NumPy generator seeded with `seed`, so the result is reproducible. The std is the population
    std over subsets (as torch-fidelity and torchmetrics report it): it measures subset-to-subset
    spread, not the standard error of the mean. Computed in float64 on the device of `feats_real`
    when it is a tensor (a GPU makes the 100 × 3 kernel matrices cheap).
    """
    real, fake = _as_f64_tensor(feats_real), _as_f64_tensor(feats_fake).to(_device(feats_real))
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"features must be (N, D) with the same D, got {tuple(real.shape)}, {tuple(fake.shape)}"
        )
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    if not 2 <= subset_size <= min(real.shape[0], fake.shape[0]):
        raise ValueError(
            f"subset_size must be between 2 and the smaller set size "
            f"({min(real.shape[0], fake.shape[0])}), got {subset_size}"
        )
    if not (torch.isfinite(real).all() and torch.isfinite(fake).all()):
        raise ValueError("features contain NaN or inf (did the generator diverge?)")
    rng = np.random.default_rng(seed)
    scores = np.empty(subsets, dtype=np.float64)
    for i in range(subsets):
        ri = torch.from_numpy(rng.choice(real.shape[0], subset_size, replace=False)).to(real.device)
        fi = torch.from_numpy(rng.choice(fake.shape[0], subset_size, replace=False)).to(real.device)
        scores[i] = mmd2_unbiased(real[ri], fake[fi])
    return float(scores.mean()), float(scores.std())


def _device(x: ArrayLike) -> torch.device:
    return x.device if isinstance(x, torch.Tensor) else torch.device("cpu")
