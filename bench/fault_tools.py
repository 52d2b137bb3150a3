"""What the fault harness's parts share (bench/faults.py): running `facegan` (also on a slow disk),
comparing checkpoints bit for bit, and the one-clear-line verdict on a refused command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from facegan.errors import FaceganError
from facegan.networks.checkpoint import load_checkpoint

TINY = ["--size", "32", "--latent-dim", "16", "--ngf", "8", "--ndf", "8", "--batch-size", "16"]
ENV = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONUNBUFFERED": "1"}


def facegan(*args: str) -> list[str]:
    return [sys.executable, "-m", "facegan", *args]


# `facegan` on a slow disk: each checkpoint is written in two halves 0.3 s apart, so a kill "right after
# the temp file appears" really lands mid-write (a local SSD writes these small files in microseconds,
# faster than any poll). Nothing else changes: the bytes and the training are the same.
SLOW_DISK = """
import io, sys, time, torch
real = torch.save
def save(obj, fh, *a, **kw):
    if isinstance(fh, io.BufferedWriter) and ".tmp-" in getattr(fh, "name", ""):
        buf = io.BytesIO(); real(obj, buf, *a, **kw); data = buf.getvalue()
        fh.write(data[: len(data) // 2]); fh.flush(); time.sleep(0.3); fh.write(data[len(data) // 2:])
        return None
    return real(obj, fh, *a, **kw)
torch.save = save
from facegan.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def facegan_slow_disk(*args: str) -> list[str]:
    return [sys.executable, "-c", SLOW_DISK, *args]


def run(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=timeout)


def same(a: Any, b: Any) -> bool:
    """Bit-identical nested checkpoint contents (tensors by dtype and value)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(same, a, b))
    return bool(a == b)


def training_state(path: Path) -> dict[str, Any]:
    """The parts of a checkpoint that must match after a resume (not the writer's version stamps)."""
    ckpt = load_checkpoint(path)
    return {k: v for k, v in ckpt.items() if k not in ("facegan_version",)}


def corrupt_files(run_dir: Path) -> list[str]:
    """Names of checkpoints (ckpt-*.pt, latest.pt, best.pt) in checkpoints/ that do not load."""
    bad = []
    for path in sorted((run_dir / "checkpoints").glob("*.pt")):
        try:
            load_checkpoint(path)
        except FaceganError:
            bad.append(path.name)
    return bad


def temp_files(run_dir: Path) -> list[str]:
    """Temp files of interrupted writes still in checkpoints/ (the next save removes dead writers')."""
    return [p.name for p in (run_dir / "checkpoints").glob(".*.tmp-*")]


def latest_run(outdir: Path) -> Path | None:
    runs = sorted(p for p in outdir.glob("*") if (p / "checkpoints" / "latest.pt").is_file())
    return runs[-1] if runs else None


def one_clear_line(done: subprocess.CompletedProcess[str]) -> bool:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    return done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr
