"""A run's side writes on a full disk, and the temp files of writers that died: a failed sample grid,
figure or log record is one warning line and training goes on with nothing lost; a killed export's temp
file is cleared by the next export."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import facegan.tracking.plots
import facegan.tracking.runs
import facegan.training.loop
from facegan.cli.main import main
from facegan.networks.checkpoint import load_checkpoint

TINY = ["--size", "32", "--latent-dim", "16", "--ngf", "8", "--ndf", "8", "--batch-size", "16"]


def _disk_full(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def _train(prepared: Path, runs: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = main(
        [
            "train",
            "--data",
            str(prepared),
            *TINY,
            "--steps",
            "8",
            "--log-every",
            "2",
            "--sample-every",
            "2",
            "--ckpt-every",
            "4",
            "--num-samples",
            "4",
            "--outdir",
            str(runs),
            "--quiet",
            "--tracker",
            "none",
        ]
    )
    return code, capsys.readouterr().err


@pytest.mark.parametrize("where", ["sample", "figures", "log"])
def test_a_failed_side_write_is_one_line_and_training_goes_on(
    prepared: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    if where == "sample":  # the PNG of a fixed-noise grid
        monkeypatch.setattr(facegan.training.loop, "save_image", _disk_full)
    elif where == "figures":  # loss/score curves and real-vs-fake at the end of the run
        monkeypatch.setattr(facegan.tracking.plots.plt.Figure, "savefig", _disk_full)
    else:  # a stats.jsonl record
        monkeypatch.setattr(facegan.tracking.runs.RunLogger, "_log", _disk_full)
    code, err = _train(prepared, tmp_path / "runs", capsys)
    assert code == 0, err
    assert "Traceback" not in err
    warnings = [line for line in err.splitlines() if "No space left on device" in line]
    assert len(warnings) == 1, err  # once per kind of write, not once per step
    assert "training goes on" in warnings[0] and warnings[0].startswith("warning: could not write the")
    (run,) = (tmp_path / "runs").iterdir()
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["step"] == 8  # nothing lost
    assert (run / "generator.safetensors").is_file()


def test_a_sample_grid_is_written_whole_or_not_at_all(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = facegan.training.loop.save_image

    def half_then_full(tensor: Any, fp: Any, **kwargs: Any) -> None:
        with open(fp, "wb") as fh:  # a few bytes reach the disk, then it is full
            fh.write(b"\x89PNG\r\n")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(facegan.training.loop, "save_image", half_then_full)
    code, err = _train(prepared, tmp_path / "runs", capsys)
    assert code == 0, err
    (run,) = (tmp_path / "runs").iterdir()
    assert list((run / "samples").iterdir()) == []  # no torn PNG, no temp file
    assert real is not None


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("name", ["celeba64.safetensors", "celeba64.onnx"])
def test_a_killed_export_s_temp_file_is_cleared_by_the_next_export(tmp_path: Path, name: str) -> None:
    if name.endswith(".onnx"):
        pytest.importorskip("onnxscript")
    stale = tmp_path / f".{name}.tmp-{_dead_pid()}"  # what SIGKILL mid-write leaves behind
    stale.write_bytes(b"half a file")
    other = tmp_path / f".notes.txt.tmp-{_dead_pid()}"  # not this export's: left alone
    other.write_bytes(b"x")
    assert main(["export", "--pretrained", "celeba64", "--out", str(tmp_path / name)]) == 0
    assert not stale.exists()
    assert other.exists()
    # A .safetensors export also writes the model's edit directions beside it (facegan.edits); ONNX keeps
    # them inside the graph (its `edits` input), so no file beside it.
    edits = ["celeba64.edits.safetensors"] if name.endswith(".safetensors") else []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, other.name, *edits])
