"""Atomic, synced writes and the cache root (facegan.storage.files), as every writer of facegan uses them."""

from __future__ import annotations

import errno
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from facegan.config.schema import ModelConfig
from facegan.data.dataset import PackedDataset
from facegan.data.prepare import default_cache_dir
from facegan.errors import FaceganError
from facegan.metrics.cache import RealStats, default_metrics_cache_dir, save_real_stats
from facegan.metrics.evaluate import real_stats
from facegan.networks.checkpoint import export_generator, save_checkpoint
from facegan.networks.factory import build_models
from facegan.storage.files import atomic_write, cache_root
from facegan.tracking.plots import progress_gif

SMALL = ModelConfig(size=32, latent_dim=16, ngf=8, ndf=8)


def test_one_cache_root_for_datasets_and_metrics(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FACEGAN_CACHE", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "mine"
    assert default_cache_dir() == tmp_path / "mine" / "datasets"
    assert default_metrics_cache_dir() == tmp_path / "mine" / "metrics"
    monkeypatch.delenv("FACEGAN_CACHE")
    assert cache_root() == tmp_path / "xdg" / "facegan"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "facegan"


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, int, str]]]:
    """Records ("fsync", inode) and ("rename", inode of the file renamed, destination) in call order."""
    events: list[tuple[str, int, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.fstat(fd).st_ino, ""))
        real_fsync(fd)

    def replace(src: Any, dst: Any, **kwargs: Any) -> None:
        events.append(("rename", os.stat(src).st_ino, os.path.basename(dst)))
        real_replace(src, dst, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    yield events


def _frames(tmp_path: Path) -> list[Path]:
    from PIL import Image

    paths = []
    for step in (1, 2):
        path = tmp_path / "samples" / f"step-{step:08d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 16), (40 * step, 0, 0)).save(path)
        paths.append(path)
    return paths


WRITERS: dict[str, Callable[[Path], Path]] = {
    "metrics cache": lambda d: (
        save_real_stats(d / "real.npz", {"k": 1}, RealStats.from_features(np.eye(4, dtype=np.float32))),
        d / "real.npz",
    )[1],
    "checkpoint": lambda d: save_checkpoint(d, {"step": 1}, 1, keep=2),
    "export": lambda d: export_generator(build_models(SMALL)[0], SMALL, d / "g.safetensors"),
    "progress.gif": lambda d: progress_gif(_frames(d), d / "progress.gif"),  # type: ignore[return-value]
}


@pytest.mark.parametrize("writer", list(WRITERS))
def test_every_writer_syncs_the_file_before_renaming_it_into_place(
    tmp_path: Path, synced: list[tuple[str, int, str]], writer: str
) -> None:
    """A power cut right after the rename must not leave an empty or partly written file under the
    real name: the data reaches the disk before the rename that publishes it."""
    path = WRITERS[writer](tmp_path)
    renames = [(ino, dst) for kind, ino, dst in synced if kind == "rename" and dst == path.name]
    assert renames, f"{writer} did not write {path.name} by renaming a finished file over it"
    for ino, _ in renames:
        at = synced.index(("rename", ino, path.name))
        assert ("fsync", ino, "") in synced[:at], f"{writer} renamed {path.name} into place before syncing it"


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    atomic_write(path, lambda tmp: tmp.write_text("old"))

    def half_then_full_disk(tmp: Path) -> None:
        tmp.write_text("ne")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(
        FaceganError,
        match=r"could not write .*No space left on device; any previous file "
        r"there is intact — free some disk space",
    ) as err:
        atomic_write(path, half_then_full_disk)
    assert "\n" not in str(err.value)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]


class _Features:
    extractor_id = "test-files-v1"  # named, so the real features are cached

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().mean(dim=(2, 3))


def test_a_full_disk_at_the_metrics_cache_costs_one_warning_not_the_numbers(
    prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds, cache = PackedDataset(prepared), tmp_path / "cache"
    real_stats(ds, 32, _Features(), cache_dir=cache)  # an earlier evaluation's cache file
    (old,) = cache.iterdir()
    before = old.read_bytes()

    def full_disk(fh: Any, **arrays: Any) -> None:
        fh.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stats = real_stats(ds, 48, _Features(), cache_dir=cache)  # a new key: a new cache file
    assert stats.features.shape == (48, 3) and np.isfinite(stats.mu).all()
    assert len(caught) == 1 and "No space left on device" in str(caught[0].message)
    assert "\n" not in str(caught[0].message)
    assert old.read_bytes() == before and list(cache.iterdir()) == [old]  # no temp file left
