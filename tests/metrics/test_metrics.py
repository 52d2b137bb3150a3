"""Tests for facegan.metrics: Fréchet distance, KID, C2ST, Inception weights, evaluate()."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
import torch
from torch import nn

from facegan.config.schema import ModelConfig
from facegan.data.dataset import PackedDataset
from facegan.data.prepare import prepare
from facegan.data.synthetic import synthetic_face
from facegan.errors import FaceganError
from facegan.metrics import (
    METRICS_FILE,
    PROTOCOLS,
    WEIGHTS_ENV,
    WEIGHTS_FILE,
    WEIGHTS_URL,
    append_metrics,
    c2st,
    evaluate,
    frechet_distance,
    gaussian_stats,
    inception_extractor,
    kid,
    mmd2_unbiased,
    parse_metrics,
    resolve_weights,
    to_uint8,
)
from facegan.metrics.inception import FIDELITY_WEIGHTS_FILE, INCEPTION_ID
from facegan.metrics.protocols import real_indices
from facegan.networks.dcgan import DCGANGenerator
from facegan.networks.factory import build_models

SIZE = 32


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Any:
    """These small workloads run fastest on one thread, and a busy CI machine makes several
    threads spin against each other (10-100x slower); restore the setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def short_embedding(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """PRDC trains a face embedding on first use (minutes at the default length): a private cache and
    a few steps here, where only the wiring is tested."""
    from facegan.metrics import reference

    monkeypatch.setenv("FACEGAN_CACHE", str(tmp_path / "facegan-cache"))
    monkeypatch.setattr(reference, "EMBEDDING_STEPS", 5)


# ----------------------------------------------------------------------------- helpers


class CountingFeatures(nn.Module):
    """Stand-in for Inception: a fixed random conv + ReLU + global mean, counting what it sees."""

    extractor_id = "test-random-conv-v1"

    def __init__(self, dim: int = 16, seed: int = 0) -> None:
        super().__init__()
        self.num_features = dim  # lets torchmetrics skip its dummy forward pass
        self.conv = nn.Conv2d(3, dim, 5, stride=2)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=gen) * 0.1)
            self.conv.bias.copy_(torch.randn(dim, generator=gen) * 0.1)
        self.calls = 0
        self.images = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dtype == torch.uint8
        self.calls += 1
        self.images += len(x)
        return torch.relu(self.conv(x.float() / 127.5 - 1.0)).mean(dim=(2, 3))


def faces_u8(start: int, n: int, size: int = SIZE) -> np.ndarray:
    """Synthetic faces start..start+n-1 as uint8 (n, 3, size, size)."""
    return np.stack([synthetic_face(i, size).transpose(2, 0, 1) for i in range(start, start + n)])


def tiny_generator(seed: int = 0) -> DCGANGenerator:
    g, _ = build_models(ModelConfig(size=SIZE, latent_dim=16, ngf=8, ndf=8), seed=seed)
    return g.eval()


def run_with_timeout(fn: Callable[[], Any], timeout: float) -> Any:
    """fn() in a daemon thread; fails the test instead of hanging it after `timeout` seconds."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as err:  # re-raised in the test thread below
            box["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        pytest.fail(f"did not finish within {timeout}s (a weights download attempt?)")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _no_download(*args: object, **kwargs: object) -> None:
    raise AssertionError("a download of the Inception weights was attempted")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No weights anywhere: empty torch hub, no env var; any download attempt raises at once."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _no_download)
    try:
        import torch_fidelity.feature_extractor_inceptionv3 as tf_inception
    except ImportError:
        pass
    else:
        monkeypatch.setattr(tf_inception, "load_state_dict_from_url", _no_download)
    return tmp_path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> PackedDataset:
    out = tmp_path_factory.mktemp("data") / "synthetic32"
    prepare("synthetic", out, size=SIZE, synthetic_count=160, quiet=True)
    return PackedDataset(out)


@pytest.fixture(scope="module")
def random_inception_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state dict with the FID Inception's keys and shapes but random values (no download)."""
    tf_inception = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")

    cls = tf_inception.FeatureExtractorInceptionV3
    with (
        mock.patch.object(tf_inception, "load_state_dict_from_url", lambda *a, **k: {}),
        mock.patch.object(cls, "load_state_dict", lambda self, state: None),
    ):
        net = cls("inception-v3-compat", ["2048"])
    path = tmp_path_factory.mktemp("weights") / "random-inception.pth"
    torch.save(net.state_dict(), path)
    return path


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


# ----------------------------------------------------------------------------- Inception weights


def test_missing_weights_fail_fast_without_download(offline: Path) -> None:
    start = time.monotonic()
    with pytest.raises(FaceganError) as info:
        run_with_timeout(lambda: inception_extractor(None), timeout=20)
    message = str(info.value)
    assert WEIGHTS_FILE in message and WEIGHTS_URL in message
    assert "--inception-weights" in message and WEIGHTS_ENV in message
    assert "\n" not in message
    assert time.monotonic() - start < 20


def test_evaluate_without_weights_fails_before_any_work(offline: Path, dataset: PackedDataset) -> None:
    g = tiny_generator()
    with mock.patch("facegan.metrics.measurement.faces") as faces:
        with pytest.raises(FaceganError, match=WEIGHTS_FILE):
            run_with_timeout(lambda: evaluate(g, dataset, ["fid2k"], cache_dir=offline), timeout=20)
        faces.assert_not_called()


def test_explicit_weights_path_must_exist(offline: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FaceganError, match=r"--inception-weights .*is not a file"):
        resolve_weights(offline / "nope.pth")
    monkeypatch.setenv(WEIGHTS_ENV, str(offline / "nope.pth"))
    with pytest.raises(FaceganError, match=WEIGHTS_ENV):
        resolve_weights(None)


def test_wrong_weights_files_are_clear_errors(offline: Path) -> None:
    text = offline / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(FaceganError, match="cannot read Inception weights"):
        inception_extractor(text)
    other = offline / "other.pth"
    torch.save({"layer.weight": torch.zeros(2)}, other)
    with pytest.raises(FaceganError, match="not the FID Inception weights"):
        inception_extractor(other)
    partial = offline / "partial.pth"
    torch.save({"Mixed_7c.branch_pool.conv.weight": torch.zeros(2)}, partial)
    with pytest.raises(FaceganError, match="does not fit"):
        inception_extractor(partial)


def test_weights_found_via_env_and_hub_cache(
    offline: Path, monkeypatch: pytest.MonkeyPatch, random_inception_weights: Path
) -> None:
    monkeypatch.setenv(WEIGHTS_ENV, str(random_inception_weights))
    assert resolve_weights() == random_inception_weights
    monkeypatch.delenv(WEIGHTS_ENV)
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    hub.mkdir(parents=True)
    (hub / FIDELITY_WEIGHTS_FILE).symlink_to(random_inception_weights)
    assert resolve_weights() == hub / FIDELITY_WEIGHTS_FILE


def test_inception_extractor_runs_offline(offline: Path, random_inception_weights: Path) -> None:
    ext = inception_extractor(random_inception_weights)
    assert ext.extractor_id == INCEPTION_ID
    feats = ext(torch.from_numpy(faces_u8(0, 2)))
    assert feats.shape == (2, 2048) and feats.dtype == torch.float32
    assert torch.isfinite(feats).all()
    with pytest.raises(ValueError, match="uint8"):
        ext(torch.zeros(1, 3, SIZE, SIZE))


# ----------------------------------------------------------------------------- C2ST


@pytest.fixture(scope="module")
def real_faces() -> np.ndarray:
    return faces_u8(0, 600)


def test_c2st_real_vs_real_is_near_chance(real_faces: np.ndarray) -> None:
    res = c2st(real_faces[:300], real_faces[300:], seed=0)
    assert res.n_test == 300 and res.n_train == 300
    assert 0.35 < res.accuracy < 0.65
    assert res.stderr == pytest.approx(math.sqrt(res.accuracy * (1 - res.accuracy) / 300))


def test_c2st_separates_noise_and_constant_colour(real_faces: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(300, 3, SIZE, SIZE), dtype=np.uint8)
    constant = np.empty((300, 3, SIZE, SIZE), dtype=np.uint8)
    constant[:] = np.array([200, 150, 120], dtype=np.uint8)[:, None, None]
    assert c2st(real_faces[:300], noise, seed=0).accuracy > 0.9
    assert c2st(real_faces[:300], constant, seed=0).accuracy > 0.9


def test_c2st_is_deterministic_and_leaves_global_rng(real_faces: np.ndarray) -> None:
    fake = to_uint8(tiny_generator()(torch.randn(100, 16)).detach())
    state = torch.random.get_rng_state()
    first = c2st(real_faces[:100], fake, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert c2st(real_faces[:100], fake, seed=3) == first


def test_c2st_checks_inputs(real_faces: np.ndarray) -> None:
    with pytest.raises(ValueError, match="sizes differ"):
        c2st(real_faces[:10], faces_u8(0, 10, size=16))
    with pytest.raises(ValueError, match="uint8"):
        c2st(real_faces[:10].astype(np.float32), real_faces[:10])


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_end_to_end_with_cache(dataset: PackedDataset, tmp_path: Path) -> None:
    g = tiny_generator()
    g.train()  # evaluate must use eval mode and then give the mode back
    metrics = ["fid2k", "kid2k", "c2st"]
    ext = CountingFeatures()
    rng_state = torch.random.get_rng_state()

    first = evaluate(
        g,
        dataset,
        metrics,
        num_fake=64,
        cache_dir=tmp_path,
        feature_extractor=ext,
        real_split="all",
        batch_size=50,
    )
    assert set(first) == {
        "fid2k",
        "kid2k_mean",
        "kid2k_std",
        "c2st_acc",
        "c2st_se",
        "c2st_n",
        "num_fake",
        "real_heldout",
        "fid2k_real_n",
        "kid2k_real_n",
        "c2st_real_n",
    }
    assert first["real_heldout"] == 0.0 and first["fid2k_real_n"] == 160  # real_split="all" below
    assert math.isfinite(first["fid2k"]) and first["fid2k"] >= 0
    assert math.isfinite(first["kid2k_mean"]) and first["kid2k_std"] >= 0
    assert 0 <= first["c2st_acc"] <= 1 and first["c2st_n"] == 64
    assert ext.images == len(dataset) + 64  # one real pass + one generated pass
    assert len(list(tmp_path.glob("real-*.npz"))) == 1
    assert g.training
    assert torch.equal(torch.random.get_rng_state(), rng_state)

    ext.images = 0
    second = evaluate(
        g,
        dataset,
        metrics,
        num_fake=64,
        cache_dir=tmp_path,
        feature_extractor=ext,
        real_split="all",
        batch_size=50,
    )
    assert ext.images == 64  # the real pass came from the cache
    assert second == first


def test_evaluate_cache_key_depends_on_extractor(dataset: PackedDataset, tmp_path: Path) -> None:
    g = tiny_generator()
    a, b = CountingFeatures(seed=0), CountingFeatures(seed=1)
    b.extractor_id = "test-random-conv-seed1"
    evaluate(g, dataset, ["fid2k"], num_fake=16, cache_dir=tmp_path, feature_extractor=a, real_split="all")
    evaluate(g, dataset, ["fid2k"], num_fake=16, cache_dir=tmp_path, feature_extractor=b, real_split="all")
    assert b.images == len(dataset) + 16  # no stale reuse of a's features
    assert len(list(tmp_path.glob("real-*.npz"))) == 2


def test_evaluate_plain_function_extractor_is_not_cached(dataset: PackedDataset, tmp_path: Path) -> None:
    module = CountingFeatures()

    def features(x: torch.Tensor) -> torch.Tensor:
        return module(x)

    out = evaluate(
        tiny_generator(), dataset, ["kid2k"], num_fake=32, cache_dir=tmp_path, feature_extractor=features
    )
    assert math.isfinite(out["kid2k_mean"])
    assert not list(tmp_path.iterdir())


def test_evaluate_with_inception_weights_file(
    offline: Path, random_inception_weights: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The real Inception path end to end (random weights, a handful of images: a few seconds)."""
    root = tmp_path_factory.mktemp("small") / "ds"
    prepare("synthetic", root, size=SIZE, synthetic_count=6, quiet=True)
    # KID, not FID: FID of 6 vs 4 samples in 2048 dims would spend seconds on eigendecompositions.
    out = evaluate(
        tiny_generator(),
        PackedDataset(root),
        ["kid2k"],
        num_fake=4,
        inception_weights=str(random_inception_weights),
        cache_dir=offline / "cache",
    )
    assert math.isfinite(out["kid2k_mean"])
    assert len(list((offline / "cache").glob(f"real-*{INCEPTION_ID}*.npz"))) == 1


def test_evaluate_rejects_bad_requests(dataset: PackedDataset) -> None:
    ext = CountingFeatures()
    with pytest.raises(FaceganError, match="unknown metric 'fid3k'"):
        evaluate(tiny_generator(), dataset, ["fid3k"], feature_extractor=ext)
    g64, _ = build_models(ModelConfig(size=64, ngf=8, ndf=8))
    with pytest.raises(FaceganError, match="32px"):
        evaluate(g64, dataset, ["fid2k"], feature_extractor=ext)
    # A negative seed used to reach numpy's RNG (C2ST's split) and end in a ValueError traceback.
    with pytest.raises(FaceganError, match="--seed must be >= 0"):
        evaluate(tiny_generator(), dataset, ["fid2k", "c2st"], num_fake=4, seed=-1, feature_extractor=ext)
    # A NaN truncation compared false everywhere and silently measured the full distribution.
    with pytest.raises(FaceganError, match="--truncation must be a number"):
        evaluate(
            tiny_generator(), dataset, ["fid2k"], num_fake=4, truncation=float("nan"), feature_extractor=ext
        )
    with pytest.raises(FaceganError, match="--batch-size must be >= 1"):  # was range()'s ValueError
        evaluate(tiny_generator(), dataset, ["fid2k"], num_fake=4, batch_size=0, feature_extractor=ext)
    assert ext.calls == 0


def test_protocols_and_real_subset() -> None:
    assert [p.name for p in parse_metrics("FID10k, kid10k,fid10k")] == ["fid10k", "kid10k"]
    assert {"fid2k", "fid10k", "fid50k", "kid10k", "c2st"} <= set(PROTOCOLS)
    np.testing.assert_array_equal(real_indices(5, 10), np.arange(5))
    idx = real_indices(1000, 100)
    assert len(np.unique(idx)) == 100 and np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(idx, real_indices(1000, 100))


def test_to_uint8() -> None:
    x = torch.tensor([-1.0, -0.5, 0.0, 1.0, 2.0, float("nan")])
    assert to_uint8(x).tolist() == [0, 64, 128, 255, 255, 128]


def test_append_metrics(tmp_path: Path) -> None:
    path = append_metrics(tmp_path / "run", 100, {"fid10k": 12.5}, kimg=6.4)
    append_metrics(tmp_path / "run", 200, {"fid10k": float("nan"), "c2st_acc": 0.7})
    assert path == tmp_path / "run" / METRICS_FILE
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["step"] == 100 and lines[0]["kimg"] == 6.4 and lines[0]["fid10k"] == 12.5
    assert lines[1]["fid10k"] is None and lines[1]["c2st_acc"] == 0.7 and "kimg" not in lines[1]
    assert all(isinstance(line["time"], float) for line in lines)


def test_cli_evaluate_offline_defaults_to_c2st(
    offline: Path, dataset: PackedDataset, capsys: pytest.CaptureFixture[str]
) -> None:
    """`facegan evaluate` with no Inception weights anywhere runs the download-free C2ST, appends to
    the run's metrics.jsonl, and asking for FID gives the one-line "place this file" error."""
    from facegan.cli.main import main
    from facegan.networks.checkpoint import export_generator

    g = tiny_generator()
    gen = export_generator(g, g.cfg, offline / "g.safetensors")
    run = offline / "run"
    run.mkdir()
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(gen),
                "--data",
                str(dataset.root),
                "--num-fake",
                "64",
                "--device",
                "cpu",
                "--run-dir",
                str(run),
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out.splitlines()[0])
    assert 0.0 <= out["c2st_acc"] <= 1.0 and out["num_fake"] == 64
    assert json.loads((run / "metrics.jsonl").read_text())["c2st_acc"] == out["c2st_acc"]
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(gen),
                "--data",
                str(dataset.root),
                "--metrics",
                "fid2k",
                "--device",
                "cpu",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pt_inception-2015-12-05-6726825d.pth" in err


# ----------------------------------------------------------------------------- sliced Wasserstein


def test_swd_ranks_distributions_and_is_deterministic() -> None:
    from facegan.metrics import swd

    real, other = torch.from_numpy(faces_u8(0, 48)), torch.from_numpy(faces_u8(48, 48))
    noise = torch.from_numpy(np.random.default_rng(0).integers(0, 256, real.shape, dtype=np.uint8))
    same = swd(real, other)
    assert set(same) == {"swd_32", "swd_16", "swd"}
    assert same == swd(real, other)
    assert swd(real, noise)["swd"] > 2 * same["swd"]
    blurred = torch.nn.functional.avg_pool2d(other.float(), 2).repeat_interleave(2, 2).repeat_interleave(2, 3)
    assert swd(real, blurred.round().to(torch.uint8))["swd_32"] > 1.2 * same["swd_32"]  # detail is lost
    assert swd(real, real)["swd"] < 1e-6


def test_sliced_wasserstein_of_shifted_gaussians() -> None:
    """Along unit direction u, N(0, I) vs N(m, I) differ by a shift of m·u: SWD = E|m·u|."""
    from facegan.metrics import sliced_wasserstein

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(20000, 4, generator=gen)
    shift = torch.tensor([1.0, 0.0, 0.0, 0.0])
    got = sliced_wasserstein(a, a + shift, torch.Generator().manual_seed(1), directions=2000, repeats=1)
    # E|u_1| for u uniform on the 3-sphere in R^4 is 4 / (3 pi)
    assert got == pytest.approx(4 / (3 * math.pi), rel=0.05)


def test_laplacian_pyramid_reconstructs_the_image() -> None:
    from facegan.metrics.swd import _blur, laplacian_pyramid

    x = torch.from_numpy(faces_u8(0, 2)).float() / 127.5 - 1
    bands = laplacian_pyramid(x, 3)
    assert [b.shape[-1] for b in bands] == [32, 16, 8]
    img = bands[-1]
    for band in reversed(bands[:-1]):
        up = torch.zeros_like(band)
        up[:, :, ::2, ::2] = img
        img = band + 4.0 * _blur(up)
    assert torch.allclose(img, x, atol=1e-5)


def test_prdc_separates_fidelity_from_diversity() -> None:
    """Precision/density fall when fakes leave the real manifold; recall/coverage fall when they
    cover only part of it (mode dropping), which one number like SWD cannot tell apart."""
    from facegan.metrics.prdc import prdc

    rng = np.random.default_rng(0)
    real = rng.normal(size=(600, 8)).astype(np.float32)
    same = prdc(real, rng.normal(size=(600, 8)).astype(np.float32))
    off = prdc(real, rng.normal(loc=3.0, size=(600, 8)).astype(np.float32))  # wrong place
    dropped = rng.normal(size=(3000, 8)).astype(np.float32)
    dropped = dropped[dropped[:, 0] > 0.5][:600]  # one region only
    collapsed = prdc(real, dropped)
    assert same["precision"] > 0.8 and same["recall"] > 0.8 and same["coverage"] > 0.8
    assert off["precision"] < 0.2 and off["density"] < 0.2
    # mode dropping keeps fidelity but loses diversity
    assert collapsed["precision"] > 0.85 and collapsed["density"] > 0.8
    assert collapsed["coverage"] < same["coverage"] - 0.2 and collapsed["recall"] < same["recall"] - 0.2


def test_prdc_protocol_through_evaluate(prepared: Path) -> None:
    """`--metrics prdc` end to end: a fixed embedding, deterministic numbers, truncation honoured."""
    from facegan.data.dataset import PackedDataset
    from facegan.metrics import evaluate
    from facegan.metrics.prdc import RandomEmbedding

    g, _ = build_models(ModelConfig(size=32, latent_dim=16, ngf=8, ndf=8), seed=0)
    ds = PackedDataset(prepared)
    a = evaluate(g, ds, ["prdc"], num_fake=32)
    b = evaluate(g, ds, ["prdc"], num_fake=32)
    assert a == b and set(a) >= {"prdc_precision", "prdc_recall", "prdc_density", "prdc_coverage"}
    assert all(0 <= a[f"prdc_{k}"] <= 1 for k in ("precision", "recall", "coverage"))
    t = evaluate(g, ds, ["prdc"], num_fake=32, truncation=0.5)
    assert t["truncation"] == 0.5 and t != a
    e1, e2 = RandomEmbedding(), RandomEmbedding()
    assert all(torch.equal(x, y) for x, y in zip(e1.state_dict().values(), e2.state_dict().values()))


def test_evaluate_generates_the_pixel_measures_faces_once(dataset: PackedDataset) -> None:
    """SWD, C2ST and PRDC share one generated pass (each a prefix of the same seeds' faces): asking
    for all three costs the generator no more than one of them, and gives each the same numbers."""
    g, _ = build_models(ModelConfig(size=SIZE, latent_dim=16, ngf=8, ndf=8), seed=0)
    made: list[int] = []
    hook = g.register_forward_hook(lambda module, args, out: made.append(len(out)))
    try:
        together = evaluate(g, dataset, ["swd", "c2st", "prdc"], num_fake=40, seed=3, real_split="all")
        assert sum(made) == 40
        alone: dict[str, float] = {}
        for name in ("swd", "c2st", "prdc"):
            alone.update(evaluate(g, dataset, [name], num_fake=40, seed=3, real_split="all"))
    finally:
        hook.remove()
    assert together == alone


def test_a_new_metric_joins_the_registry_in_one_place(dataset: PackedDataset) -> None:
    """One decorated function makes a metric that `evaluate` (and so --metrics / --eval-metrics)
    accepts by name, drawing on the same shared pass of generated faces as the built-in ones."""
    from facegan.metrics import registry
    from facegan.metrics.measurement import Measurement
    from facegan.metrics.protocols import PROTOCOLS, Protocol

    seen: list[int] = []
    try:

        @registry.register_metric("mean_gap", "pixels", Protocol("brightness", "mean_gap", 40, 40, "test"))
        def mean_gap(m: Measurement, p: Protocol) -> dict[str, float]:
            fake = m.fake_pixels(m.n_pixel(p)).float()
            seen.append(len(fake))
            real = torch.from_numpy(m.dataset.images[m.real_rows(m.n_pixel(p))]).float()
            return {p.name: float((fake.mean() - real.mean()).abs())}

        out = evaluate(tiny_generator(), dataset, ["brightness", "swd"])
    finally:
        registry.METRICS.pop("mean_gap", None)
        PROTOCOLS.pop("brightness", None)
    assert out["brightness"] >= 0 and "swd" in out and seen == [16]  # the 16 held-out reals cap n
    with pytest.raises(FaceganError, match="unknown metric 'brightness'"):
        evaluate(tiny_generator(), dataset, ["brightness"])
