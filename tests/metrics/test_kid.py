"""KID's unbiased MMD² (facegan/metrics/kid.py), and our FID and KID against torchmetrics'."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facegan.metrics import frechet_distance, gaussian_stats, kid, mmd2_unbiased
from tests.metrics.helpers import CountingFeatures, faces_u8

pytestmark = pytest.mark.usefixtures("one_thread", "short_embedding")


# ----------------------------------------------------------------------------- KID


def _mmd2_double_loop(x: np.ndarray, y: np.ndarray) -> float:
    """Direct O(n²) unbiased MMD² with k(a, b) = (a·b/d + 1)³."""
    m, n, d = len(x), len(y), x.shape[1]

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return (float(a @ b) / d + 1.0) ** 3

    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_mmd2_matches_double_loop() -> None:
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(12, 5)), rng.normal(0.3, 1.2, size=(15, 5))
    assert mmd2_unbiased(x, y) == pytest.approx(_mmd2_double_loop(x, y), rel=1e-10)


def test_kid_subsets_match_double_loop() -> None:
    rng = np.random.default_rng(7)
    real, fake = rng.normal(size=(30, 4)), rng.normal(0.5, 1.0, size=(25, 4))
    subsets, size, seed = 5, 10, 11
    # The documented sampling: one NumPy generator, real then fake indices per subset.
    draw = np.random.default_rng(seed)
    scores = []
    for _ in range(subsets):
        ri, fi = draw.choice(30, size, replace=False), draw.choice(25, size, replace=False)
        scores.append(_mmd2_double_loop(real[ri], fake[fi]))
    mean, std = kid(real, fake, subsets, size, seed=seed)
    assert mean == pytest.approx(np.mean(scores), rel=1e-10)
    assert std == pytest.approx(np.std(scores), rel=1e-8)
    assert kid(real, fake, subsets, size, seed=seed) == (mean, std)  # deterministic


def test_kid_near_zero_for_same_distribution_and_positive_for_shift() -> None:
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    same, _ = kid(a, b, subsets=10, subset_size=200)
    shifted, _ = kid(a, b + 1.0, subsets=10, subset_size=200)
    assert abs(same) < 0.02
    assert shifted > 10 * abs(same) and shifted > 0.05


def test_kid_rejects_bad_subset_size() -> None:
    x = np.zeros((5, 3))
    with pytest.raises(ValueError, match="subset_size"):
        kid(x, x, subsets=2, subset_size=6)


# ----------------------------------------------------------------------------- torchmetrics


def test_fid_and_kid_agree_with_torchmetrics() -> None:
    tm_fid_module = pytest.importorskip("torchmetrics.image.fid")
    tm_kid_module = pytest.importorskip("torchmetrics.image.kid")

    real = torch.from_numpy(faces_u8(0, 120))
    # A blurred, brightened copy of other faces: a clearly different distribution.
    other = torch.from_numpy(faces_u8(500, 120)).float()
    fake = (torch.nn.functional.avg_pool2d(other, 3, 1, 1) * 0.8 + 40).round().to(torch.uint8)

    ext = CountingFeatures()
    with torch.no_grad():
        fr, ff = ext(real), ext(fake)
    ours_fid = frechet_distance(*gaussian_stats(fr), *gaussian_stats(ff))
    ours_kid, ours_std = kid(fr, ff, subsets=3, subset_size=120)

    tm_fid = tm_fid_module.FrechetInceptionDistance(feature=CountingFeatures())
    tm_fid.update(real, real=True)
    tm_fid.update(fake, real=False)
    # subset_size = N: every subset is the whole set, so the random subsets cannot differ.
    with pytest.warns(UserWarning, match="buffer"):
        tm_kid = tm_kid_module.KernelInceptionDistance(feature=CountingFeatures(), subsets=3, subset_size=120)
    tm_kid.update(real, real=True)
    tm_kid.update(fake, real=False)
    tm_mean, tm_std = tm_kid.compute()

    assert ours_fid > 0.01
    assert ours_fid == pytest.approx(float(tm_fid.compute()), rel=1e-4)
    assert ours_kid == pytest.approx(float(tm_mean), rel=1e-3)
    assert ours_std == pytest.approx(0.0, abs=1e-12) and float(tm_std) == pytest.approx(0, abs=1e-6)
