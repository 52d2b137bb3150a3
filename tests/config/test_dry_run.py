"""`facegan train --dry-run` describes a run and writes nothing (facegan/training/plan.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.config.helpers import one_error_line, run_cli

TINY = [
    "--size",
    "32",
    "--latent-dim",
    "8",
    "--ngf",
    "4",
    "--ndf",
    "4",
    "--synthetic-count",
    "16",
    "--batch-size",
    "8",
    "--device",
    "cpu",
]


# ----------------------------------------------------------------------------- --dry-run


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@pytest.mark.parametrize("extra", [[], ["--preset", "r3gan"], ["--preset", "sngan-da", "--steps", "5"]])
def test_dry_run_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], extra: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FACEGAN_CACHE", str(tmp_path / "cache"))
    before = _files(tmp_path)
    assert run_cli("train", *extra, *TINY, "--dry-run", "--outdir", str(tmp_path / "runs")) == 0
    out = capsys.readouterr().out
    assert _files(tmp_path) == before
    assert "device         cpu: " in out and "first step     ok" in out
    assert re.search(r"generator +[\d,]+ parameters", out) and "discriminator" in out
    assert f"run folder     {tmp_path / 'runs'}/00000-synthetic-" in out
    steps = "5 (--steps" if "--steps" in extra else "10 (5 epochs of 2 steps, batch 8)"
    assert f"steps          {steps}" in out


def test_dry_run_counts_a_prepared_dataset_and_names_the_next_run(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "runs" / "00004-old").mkdir(parents=True)
    before = _files(tmp_path)
    assert (
        run_cli("train", *TINY, "--data", str(prepared), "--dry-run", "--outdir", str(tmp_path / "runs")) == 0
    )
    out = capsys.readouterr().out
    assert _files(tmp_path) == before
    assert "(prepared, 64 images)" in out and "00005-prepared-dcgan32" in out


def test_dry_run_reports_a_too_large_batch(prepared: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("train", *TINY, "--data", str(prepared), "--batch-size", "128", "--dry-run") == 2
    one_error_line(capsys, "--batch-size 128 is larger than the dataset (64 images)")


@pytest.mark.parametrize("flag", ["--dry-run", "--print-config"])
def test_describe_flags_refuse_resume(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("train", "--resume", "auto", flag) == 2
    one_error_line(capsys, "do not combine with --resume")
