"""`evaluate` and `facegan evaluate` (facegan/metrics/evaluate.py): cache, extractors, errors, log."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from facegan.config.schema import ModelConfig
from facegan.data.dataset import PackedDataset
from facegan.data.prepare import prepare
from facegan.errors import FaceganError
from facegan.metrics import METRICS_FILE, append_metrics, evaluate
from facegan.metrics.inception import INCEPTION_ID
from facegan.networks.factory import build_models
from tests.metrics.helpers import SIZE, CountingFeatures, tiny_generator

pytestmark = pytest.mark.usefixtures("one_thread", "short_embedding")


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
