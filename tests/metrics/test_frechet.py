"""Fréchet distance and Gaussian statistics (facegan/metrics/frechet.py) against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from facegan.metrics import frechet_distance, gaussian_stats

pytestmark = pytest.mark.usefixtures("one_thread", "short_embedding")


# ----------------------------------------------------------------------------- Fréchet distance


def _random_cov(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_frechet_diagonal_closed_form() -> None:
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    v1, v2 = rng.uniform(0.1, 3, size=6), rng.uniform(0.1, 3, size=6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))
    got = frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2))
    assert got == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_frechet_singular_diagonal_closed_form() -> None:
    """Zero variances make S1 singular (no Cholesky factor): the eigh fallback must agree."""
    rng = np.random.default_rng(9)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    v1, v2 = np.array([0.0, 1.0, 0.0, 2.0, 0.5, 0.0]), rng.uniform(0.1, 3, size=6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu2, np.diag(v2), mu1, np.diag(v1)) == pytest.approx(expected, rel=1e-9)


def test_frechet_commuting_covariances() -> None:
    """S1 = Q diag(a) Qᵀ and S2 = Q diag(b) Qᵀ commute, so Tr (S1 S2)^½ = Σ √(a b)."""
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    a, b = rng.uniform(0.05, 4, size=8), rng.uniform(0.05, 4, size=8)
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(a + b - 2 * np.sqrt(a * b))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_frechet_matches_scipy_sqrtm_reference() -> None:
    rng = np.random.default_rng(2)
    s1, s2 = _random_cov(rng, 20), _random_cov(rng, 20)
    mu1, mu2 = rng.normal(size=20), rng.normal(size=20)
    scipy_linalg = pytest.importorskip("scipy.linalg")
    covmean = scipy_linalg.sqrtm(s1 @ s2)
    reference = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * np.real(covmean))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(reference, rel=1e-8)


def test_frechet_zero_for_identical_and_symmetric() -> None:
    rng = np.random.default_rng(3)
    s1, s2 = _random_cov(rng, 12), _random_cov(rng, 12)
    mu1, mu2 = rng.normal(size=12), rng.normal(size=12)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(frechet_distance(mu2, s2, mu1, s1), rel=1e-9)
    # Torch tensors (e.g. float32 stats) are accepted too.
    assert frechet_distance(*(torch.from_numpy(x) for x in (mu1, s1, mu2, s2))) == pytest.approx(
        frechet_distance(mu1, s1, mu2, s2), rel=1e-12
    )


def test_frechet_singular_covariances_from_few_samples() -> None:
    """Fewer samples than dimensions give rank-deficient covariances; the result stays finite."""
    rng = np.random.default_rng(4)
    f1, f2 = rng.normal(size=(10, 32)), rng.normal(size=(10, 32)) + 0.5
    value = frechet_distance(*gaussian_stats(f1), *gaussian_stats(f2))
    assert math.isfinite(value) and value > 0


def test_frechet_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="shape"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.full(2, np.nan), np.eye(2), np.zeros(2), np.eye(2))


def test_gaussian_stats_matches_numpy() -> None:
    f = np.random.default_rng(5).normal(size=(50, 7)).astype(np.float32)
    mu, sigma = gaussian_stats(f)
    np.testing.assert_allclose(mu, f.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(f.astype(np.float64), rowvar=False), rtol=1e-10)
