"""Part (b) of the fault harness (bench/faults.py): writes on a full disk. A 16 MB tmpfs is filled, then
a checkpoint, an export, a prepare and a metric-cache write are tried on it: each must fail in one clear
line (or, for the cache, warn and carry on) and leave the old file intact. Skipped, with the reason,
where `mount` is not permitted (needs root)."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

import torch

from bench.fault_tools import (
    TINY,
    facegan,
    one_clear_line,
    run,
)


def fill(folder: Path, leave: int = 0) -> Path:
    """Fill the file system of `folder` with one filler file, to the last byte but `leave`."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as fh:  # unbuffered: nothing left over to fail at close
        for size in (1 << 16, 4096, 1):
            try:
                while fh.write(b"\0" * size):
                    pass
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()


def disk_full(work: Path, say: Any = print) -> dict[str, Any]:
    mnt = work / "tmpfs"
    mnt.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        reason = (mounted.stderr.strip().splitlines() or ["mount failed"])[0]
        say(f"disk full: skipped — cannot mount a tmpfs here ({reason})")
        return {"skipped": reason}
    results: dict[str, Any] = {}
    try:
        data = work / "data"
        runs = mnt / "runs"
        first = run(
            facegan(
                "train",
                "--data",
                str(data),
                *TINY,
                "--steps",
                "4",
                "--ckpt-every",
                "2",
                "--keep-ckpts",
                "1",
                "--sample-every",
                "100000",
                "--num-samples",
                "4",
                "--outdir",
                str(runs),
                "--quiet",
            )
        )
        assert first.returncode == 0, first.stderr
        run_dir = next(runs.iterdir())
        latest, export = run_dir / "checkpoints" / "latest.pt", run_dir / "generator.safetensors"
        prepared = mnt / "prepared"
        first_prep = run(
            facegan(
                "prepare", "synthetic", "--count", "32", "--size", "32", "--out", str(prepared), "--quiet"
            )
        )
        assert first_prep.returncode == 0, first_prep.stderr
        prep_files = sorted(p for p in prepared.iterdir() if p.is_file())

        def attempt(name: str, cmd: list[str], keep: list[Path], leave: int = 0) -> None:
            before = digest(*keep)
            filler = fill(mnt, leave)
            try:
                done = run(cmd)
            finally:
                filler.unlink()
            intact = digest(*keep) == before
            clear = one_clear_line(done)
            results[name] = {
                "clear": clear,
                "intact": intact,
                "rc": done.returncode,
                "stderr": done.stderr.strip()[-300:],
            }
            say(
                f"disk full at {name}: exit {done.returncode}, "
                f"{'one clear line' if clear else 'NOT one clear line'}, old file "
                f"{'intact' if intact else 'DAMAGED'}: {done.stderr.strip().splitlines()[-1:]}"
            )

        # Room for the run folder's small writes (config, stats, TensorBoard), not for a checkpoint.
        attempt(
            "checkpoint",
            facegan("train", "--resume", str(run_dir), "--steps", "6", "--quiet"),
            [latest],
            leave=48 << 10,
        )
        attempt("run folder", facegan("train", "--resume", str(run_dir), "--steps", "6", "--quiet"), [latest])
        attempt("export", facegan("export", "--checkpoint", str(run_dir), "--out", str(export)), [export])
        attempt(
            "prepare",
            facegan(
                "prepare",
                "synthetic",
                "--count",
                "64",
                "--size",
                "32",
                "--out",
                str(prepared),
                "--force",
                "--quiet",
            ),
            prep_files,
        )
        results["metric-cache"] = _metric_cache_full(mnt, data, say)
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
    return results


def _metric_cache_full(mnt: Path, data: Path, say: Any) -> dict[str, Any]:
    """The real-feature cache on a full disk: the numbers are still returned, with one warning, and the
    cache file written before stays intact."""
    import warnings

    import numpy as np

    from facegan.data.dataset import PackedDataset
    from facegan.metrics.evaluate import real_stats

    class Features:
        extractor_id = "faults-harness-v1"  # a named extractor, so its features are cached

        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            return x.float().mean(dim=(2, 3))

    ds, cache = PackedDataset(data), mnt / "metric-cache"
    real_stats(ds, 64, Features(), cache_dir=cache)  # the old cache file
    old = sorted(p for p in cache.rglob("*") if p.is_file())
    before = digest(*old)
    filler = fill(mnt)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            stats = real_stats(ds, 128, Features(), cache_dir=cache)  # a new key: a new cache file
        ok = np.isfinite(stats.mu).all() and len(caught) == 1
    except Exception as err:  # any escape is the finding this records
        ok, caught = False, [type(err).__name__]
    finally:
        filler.unlink()
    intact = digest(*old) == before
    leftovers = [p.name for p in cache.rglob(".*.tmp-*")]  # facegan.storage.files.atomic_write's temp files
    say(
        f"disk full at metric cache: {'numbers returned with one warning' if ok else 'FAILED'}, old file "
        f"{'intact' if intact else 'DAMAGED'}, partial files left {len(leftovers)}"
    )
    return {"clear": bool(ok), "intact": intact, "partial_left": leftovers}
