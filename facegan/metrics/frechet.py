"""Fréchet distance between Gaussians fitted to feature sets (the math behind FID).

Hand-written rather than taken from torchmetrics' `FrechetInceptionDistance` because facegan
computes the distance from *cached* real statistics and from arbitrary (pluggable) feature
extractors; the torchmetrics metric object only works from images it has fed through its own network
itself.
"""

from __future__ import annotations

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor
_CHUNK = 8192


def _f64(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def gaussian_stats(features: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), in float64."""
    f = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else features
    f = np.asarray(f)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need features of shape (N >= 2, D), got {f.shape}")
    # float64 accumulation (float32 covariances of 2048-d features lose FID digits), in row chunks
    # so 50k float32 features never need a full float64 copy.
    mu = f.mean(axis=0, dtype=np.float64)
    sigma = np.zeros((f.shape[1], f.shape[1]), dtype=np.float64)
    for start in range(0, f.shape[0], _CHUNK):
        centred = f[start : start + _CHUNK].astype(np.float64) - mu
        sigma += centred.T @ centred
    return mu, sigma / (f.shape[0] - 1)


def _psd_factor(a: np.ndarray) -> np.ndarray:
    """Some F with F Fᵀ = a, for symmetric positive semi-definite a.

    Cholesky when a is positive definite (far faster than an eigendecomposition at 2048×2048);
    V √W from an eigendecomposition when it is singular, e.g. from fewer samples than dimensions.
    """
    try:
        root: np.ndarray = np.linalg.cholesky(a)
        return root
    except np.linalg.LinAlgError:
        w, v = np.linalg.eigh(a)
        factor: np.ndarray = v * np.sqrt(np.clip(w, 0.0, None))
        return factor


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
    """d² = ||mu1 - mu2||² + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^½), in float64.

    Tr((S1 S2)^½) is computed as Σ √λ over the eigenvalues λ of the symmetric PSD matrix Fᵀ S2 F,
    where S1 = F Fᵀ; it has the same spectrum as S1 S2 = F (Fᵀ S2), since AB and BA share their
    eigenvalues. Unlike `scipy.linalg.sqrtm(S1 @ S2)` (a non-symmetric matrix) this never
    produces complex parts, the only rounding artefacts being tiny negative eigenvalues, clipped to
    0; and it copes with singular covariances (fewer samples than dimensions), where sqrtm needs an
    ad-hoc diagonal offset.
    """
    m1, m2, s1, s2 = _f64(mu1), _f64(mu2), _f64(sigma1), _f64(sigma2)
    d = m1.shape[0]
    if m1.shape != (d,) or m2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(
            f"shape mismatch: mu1 {m1.shape}, sigma1 {s1.shape}, mu2 {m2.shape}, sigma2 {s2.shape}"
        )
    if not all(np.isfinite(x).all() for x in (m1, m2, s1, s2)):
        raise ValueError("statistics contain NaN or inf (did the generator diverge?)")
    # Symmetrise: covariances accumulated in floating point are symmetric only up to rounding.
    s1, s2 = (s1 + s1.T) / 2, (s2 + s2.T) / 2
    f1 = _psd_factor(s1)
    inner = f1.T @ s2 @ f1
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = m1 - m2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)
    # d² is a squared Wasserstein-2 distance, so >= 0; a tiny negative value is rounding only.
    return max(value, 0.0)
