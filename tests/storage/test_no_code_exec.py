"""Loading never runs code: every file facegan reads (checkpoints, exports, the prepared dataset, the
metric cache, the Inception weights, serve's models) may come from someone else.

Each payload is a real pickle whose unpickling calls os.mkdir(marker): a visible side effect. A loader
that unpickles (torch.load without weights_only, np.load with allow_pickle, pickle.loads) creates the
marker folder; facegan's loaders must refuse the file with one clear line and leave no marker.
"""

from __future__ import annotations

import io
import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from facegan.cli.main import main
from facegan.config.schema import ModelConfig, RunConfig
from facegan.data.dataset import PackedDataset
from facegan.data.prepare import IMAGES, MANIFEST
from facegan.errors import FaceganError
from facegan.metrics.cache import RealStats, cache_key, cache_path, load_real_stats
from facegan.networks.checkpoint import FORMAT, load_checkpoint, read_exported
from facegan.networks.factory import build_models
from facegan.sampling.generate import load_generator
from tests.conftest import deadline

SMALL = ModelConfig(size=32, latent_dim=16, ngf=8, ndf=8)


class Evil:
    """Unpickling this calls os.mkdir(marker)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[[str], None], tuple[str]]:
        return (os.mkdir, (str(self.marker),))


def _checkpoint(marker: Path) -> dict:
    """A complete, valid-looking facegan checkpoint with the payload tucked inside its config."""
    g, d = build_models(SMALL)
    config = RunConfig(model=SMALL).to_dict()
    config["note"] = Evil(marker)
    return {"format": FORMAT, "config": config, "step": 1, "G": g.state_dict(), "D": d.state_dict()}


def _torch_bytes(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _payloads(marker: Path) -> dict[str, bytes]:
    """The same side effect in every container a loader might unpickle."""
    return {
        "torch.save": _torch_bytes(_checkpoint(marker)),
        "pickle protocol 0 (ASCII, looks like text)": pickle.dumps(Evil(marker), protocol=0),
        "pickle protocol 2": pickle.dumps({"shape": [1, 3, 32, 32], "x": Evil(marker)}, protocol=2),
    }


def _refused(marker: Path, match: str, what: str, load: Callable[..., object], *args: object) -> None:
    """`load(*args)` must raise one FaceganError line matching `match`, and must not have run the
    payload (checked first: a loader that runs it usually also accepts the file)."""
    with pytest.raises(FaceganError, match=match) as err:
        try:
            load(*args)
        finally:
            assert not marker.exists(), f"{what} ran code from the file"
    assert "\n" not in str(err.value)


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run the facegan CLI in-process: (exit code, stderr)."""
    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr().err


def _one_line(code: int, err: str) -> bool:
    return code == 2 and err.count("\n") == 1 and "Traceback" not in err


# ----------------------------------------------------------------------------- checkpoints and exports


@pytest.mark.parametrize("loader", [load_checkpoint, load_generator], ids=lambda f: f.__name__)
def test_checkpoint_payloads_are_refused_without_running(tmp_path: Path, loader: Callable) -> None:
    marker = tmp_path / "code-ran"
    for name, data in _payloads(marker).items():
        path = tmp_path / "evil.pt"
        path.write_bytes(data)
        _refused(marker, "not a readable facegan checkpoint", f"{loader.__name__} ({name})", loader, path)


def test_run_folder_with_evil_latest_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    torch.save(_checkpoint(marker), tmp_path / "run" / "checkpoints" / "latest.pt")
    _refused(
        marker,
        "not a readable facegan checkpoint",
        "load_generator(run folder)",
        load_generator,
        tmp_path / "run",
    )


def test_pickle_named_safetensors_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    for name, data in _payloads(marker).items():
        path = tmp_path / "generator.safetensors"
        path.write_bytes(data)
        for load in (read_exported, load_generator):
            _refused(marker, "not a readable safetensors file", f"{load.__name__} ({name})", load, path)


# ----------------------------------------------------------------------------- the prepared dataset


def _valid_manifest(count: int = 1, size: int = 32) -> str:
    return json.dumps(
        {"shape": [count, 3, size, size], "count": count, "size": size, "content_hash": "sha256:x"}
    )


def _dataset(root: Path, manifest: str | bytes, images: bytes) -> Path:
    root.mkdir(exist_ok=True)
    (root / MANIFEST).write_bytes(manifest.encode() if isinstance(manifest, str) else manifest)
    (root / IMAGES).write_bytes(images)
    return root


def test_pickle_planted_as_manifest_is_refused_without_running(tmp_path: Path) -> None:
    """manifest.json is parsed as JSON: a pickle there is not JSON, so it is refused, never unpickled."""
    marker = tmp_path / "code-ran"
    for name, data in _payloads(marker).items():
        root = _dataset(tmp_path / "ds", data, bytes(3 * 32 * 32))
        _refused(
            marker,
            "not a readable prepared dataset",
            f"a dataset with a pickle ({name}) as manifest",
            PackedDataset,
            root,
        )


def test_pickle_planted_as_images_is_only_ever_bytes(tmp_path: Path) -> None:
    """images.u8 is memory-mapped as raw uint8: a pickle padded to exactly the size the manifest says
    opens as (meaningless) pixels and never runs; one of any other size is refused."""
    marker = tmp_path / "code-ran"
    face = 3 * 32 * 32
    for name, data in _payloads(marker).items():
        count = -(-len(data) // face)
        padded = data + bytes(count * face - len(data))  # pickles ignore bytes after their STOP
        ds = PackedDataset(_dataset(tmp_path / "ds", _valid_manifest(count), padded))
        assert not marker.exists(), f"opening a dataset with a pickle ({name}) as {IMAGES} ran code"
        assert len(ds) == count and bytes(ds.images[0].ravel()[: len(data)]) == data[:face]
        for wrong in (data, padded + b"x"):
            with pytest.raises(FaceganError, match="bytes, the manifest's shape"):
                PackedDataset(_dataset(tmp_path / "ds", _valid_manifest(count), wrong))
        assert not marker.exists(), f"opening a dataset with a pickle ({name}) as {IMAGES} ran code"


@pytest.mark.parametrize(
    "manifest",
    [
        "[1, 2]",
        "null",
        '{"shape": "abc"}',
        '{"shape": [1, 3, 32]}',
        '{"shape": [1, 3, 32, 32.5]}',
        '{"shape": {"a": 1}}',
    ],
)
def test_malformed_manifest_is_one_line(tmp_path: Path, manifest: str) -> None:
    with pytest.raises(FaceganError, match="not a readable prepared dataset") as err:
        PackedDataset(_dataset(tmp_path / "ds", manifest, bytes(3 * 32 * 32)))
    assert "\n" not in str(err.value)


def test_train_on_a_dataset_with_planted_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "code-ran"
    root = tmp_path / "ds"
    root.mkdir()
    (root / MANIFEST).write_bytes(pickle.dumps(Evil(marker), protocol=0))
    (root / IMAGES).write_bytes(bytes(3 * 32 * 32))
    code, err = _cli(
        capsys,
        "train",
        "--data",
        str(root),
        "--size",
        "32",
        "--steps",
        "1",
        "--outdir",
        str(tmp_path / "runs"),
        "--quiet",
    )
    assert _one_line(code, err) and "not a readable prepared dataset" in err, err
    assert not marker.exists()


# ----------------------------------------------------------------------------- the metric cache


def _cache_file(tmp_path: Path) -> tuple[Path, dict[str, object]]:
    key = cache_key("sha256:abc", 64, "test-extractor-v1")
    return cache_path(tmp_path / "cache", key), key


def test_metric_cache_with_pickled_entries_is_ignored_without_running(tmp_path: Path) -> None:
    """The cache is an .npz read with allow_pickle=False: object arrays and bare pickles planted at the
    cache path are treated as foreign files (recomputed), never unpickled."""
    marker = tmp_path / "code-ran"
    path, key = _cache_file(tmp_path)
    path.parent.mkdir(parents=True)
    for what in ("npz, object-array key", "npz, object-array features", *_payloads(marker)):
        if what.startswith("npz"):
            evil = np.array([Evil(marker)], dtype=object)
            entries = {
                "key": np.array(str(key)),
                "features": np.zeros((2, 4), np.float32),
                "mu": np.zeros(4),
                "sigma": np.eye(4),
            }
            entries["key" if "key" in what else "features"] = evil
            with open(path, "wb") as fh:
                np.savez(fh, **entries)  # np.savez pickles object arrays
        else:
            path.write_bytes(_payloads(marker)[what])
        assert load_real_stats(path, key) is None
        assert not marker.exists(), f"reading a metric cache file ({what}) ran code from it"


def test_evaluation_recomputes_over_a_planted_cache_file(prepared: Path, tmp_path: Path) -> None:
    from facegan.metrics.evaluate import real_stats

    class Features:
        extractor_id = "test-extractor-v1"

        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            return x.float().mean(dim=(2, 3))

    marker = tmp_path / "code-ran"
    ds = PackedDataset(prepared)
    key = cache_key(ds.content_hash, 32, Features.extractor_id)
    path = cache_path(tmp_path / "cache", key)
    path.parent.mkdir(parents=True)
    with open(path, "wb") as fh:
        np.savez(fh, key=np.array([Evil(marker)], dtype=object))
    stats = real_stats(ds, 32, Features(), cache_dir=tmp_path / "cache")
    assert isinstance(stats, RealStats) and stats.features.shape == (32, 3)
    assert not marker.exists()
    assert load_real_stats(path, key) is not None  # the planted file was replaced by a real cache file


def test_inception_weights_payload_is_refused(tmp_path: Path) -> None:
    from facegan.metrics.inception import inception_extractor

    marker = tmp_path / "code-ran"
    path = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save({"Mixed_7c.branch_pool.conv.weight": torch.zeros(1), "x": Evil(marker)}, path)
    _refused(marker, "cannot read Inception weights", "inception_extractor", inception_extractor, path)


# ----------------------------------------------------------------------------- serve's start-up


@pytest.mark.parametrize(("kind", "workers"), [("pt", "1"), ("pt", "2"), ("safetensors", "1")])
def test_serve_refuses_evil_file_at_start_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, workers: str
) -> None:
    pytest.importorskip("hypercorn")
    marker = tmp_path / "code-ran"
    path = tmp_path / f"evil.{kind}"
    path.write_bytes(_torch_bytes(_checkpoint(marker)))
    try:
        with deadline(60):  # were the file accepted, the server would start and run until stopped
            code, err = _cli(
                capsys, "serve", "--checkpoint", f"evil={path}", "--port", "0", "--workers", workers
            )
    finally:
        assert not marker.exists(), "facegan serve ran code from a model file while starting"
    assert _one_line(code, err) and "not a readable" in err, err
