"""A reduced run of bench/faults.py part (a): SIGKILL at 3 moments (one mid checkpoint write), resume,
and compare with an uninterrupted run; plus the harness's disk-full filler and hostile-input verdicts."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

HARNESS = Path(__file__).resolve().parents[1] / "bench" / "faults.py"


def load_harness() -> ModuleType:
    """bench/ is a folder of scripts, not a package: import the file by path."""
    spec = importlib.util.spec_from_file_location("bench_faults", HARNESS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_three_sigkills_resume_bit_identical(tmp_path: Path) -> None:
    faults = load_harness()
    result = faults.kill_resume(tmp_path, kills=3, seed=1, steps=60, say=lambda line: None)
    assert result["runs"][0]["how"] == "mid-write"  # kill 0 lands between the two halves of a write
    assert result["identical"] == 3, result["runs"]
    assert result["corrupt_files"] == 0 and result["temp_files_left"] == 0, result["runs"]


def test_one_clear_line_verdict() -> None:
    faults = load_harness()
    def done(rc: int, err: str) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess([], rc, "", err)
    assert faults.one_clear_line(done(2, "facegan train: error: bad\n"))
    assert not faults.one_clear_line(done(1, "facegan train: error: bad\n"))
    assert not faults.one_clear_line(done(2, "Traceback (most recent call last):\nOSError: x\n"))
    assert not faults.one_clear_line(done(2, "warning\nfacegan train: error: bad\n"))


def test_next_save_removes_dead_writers_temp_files(tmp_path: Path) -> None:
    """A SIGKILL mid-write leaves `.ckpt-N.pt.tmp-PID`; the next save removes it unless PID still runs."""
    import torch

    from facegan.checkpoint import save_checkpoint

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".ckpt-00000010.pt.tmp-{dead.pid}"
    live = tmp_path / f".ckpt-00000010.pt.tmp-{os.getppid()}"  # a running process: maybe mid-write
    stale.write_bytes(b"half a checkpoint")
    live.write_bytes(b"being written")
    save_checkpoint(tmp_path, {"step": 20, "G": {"w": torch.zeros(2)}}, 20, keep=2)
    assert not stale.exists() and live.exists()
