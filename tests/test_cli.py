"""Bad input on the command line: one clear line on stderr, a non-zero exit, nothing lost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_zip

from facegan.cli import main

TINY = ["--size", "32", "--latent-dim", "16", "--ngf", "8", "--ndf", "8"]


def one_error_line(capsys: pytest.CaptureFixture[str], *expect: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for text in expect:
        assert text in err, err
    return err


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> int:
    try:
        return main(list(argv))
    except SystemExit as exc:  # argparse errors
        return int(exc.code or 0)


@pytest.mark.parametrize("argv,expect", [
    (["train", "--bogus"], "unrecognized arguments: --bogus"),
    (["train", "--size", "48"], "power of two"),
    (["train", "--preset", "nope"], "unknown preset 'nope'"),
    (["train", "--batch-size", "0"], "--batch-size must be >= 1"),
    (["train", "--size", "abc"], "invalid int value"),
    (["frobnicate"], "invalid choice"),
    (["train", "--data", "/no/such/dir"], "does not exist"),
    (["train", "--device", "cuda:0"], "no CUDA GPU"),
    (["generate", "--checkpoint", "/no/such.pt"], "does not exist"),
    (["generate", "--checkpoint", "x.pt", "--seed", "a-b"], "bad --seed"),
    (["plot", "/no/such/run"], "not a run folder"),
])
def test_bad_flags_and_paths(capsys: pytest.CaptureFixture[str], argv: list[str], expect: str,
                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    if "x.pt" in argv:
        (tmp_path / "x.pt").write_bytes(b"")
    if argv[-2:] == ["--device", "cuda:0"]:
        pytest.importorskip("torch")
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
        argv = [*argv, "--data", "synthetic", "--synthetic-count", "64", *TINY]
        monkeypatch.setenv("FACEGAN_CACHE", str(tmp_path / "cache"))
    assert run_cli(capsys, *argv) != 0
    one_error_line(capsys, expect)


def test_batch_larger_than_dataset(capsys: pytest.CaptureFixture[str], prepared: Path,
                                   tmp_path: Path) -> None:
    code = run_cli(capsys, "train", "--data", str(prepared), *TINY, "--batch-size", "128",
                   "--outdir", str(tmp_path / "runs"))
    assert code != 0
    one_error_line(capsys, "larger than the dataset (64 images)", "--batch-size 64")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_prepare_zip_without_images(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    z = make_zip(tmp_path / "empty.zip", 0, extra={"docs/readme.md": b"# hi"})
    assert run_cli(capsys, "prepare", str(z), "--out", str(tmp_path / "out")) != 0
    one_error_line(capsys, "no image files found")


def test_prepare_reports_skips(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    z = make_zip(tmp_path / "d.zip", 6, extra={"img_align_celeba/broken.jpg": b"\xff\xd8\xff garbage"})
    assert run_cli(capsys, "prepare", str(z), "--out", str(tmp_path / "out"), "--size", "32", "--quiet") == 0
    out = capsys.readouterr().out
    assert "prepared 6 images" in out and "skipped 1 files: img_align_celeba/broken.jpg" in out


@pytest.mark.parametrize("content", ["missing", "garbage"])
def test_resume_from_bad_checkpoint(capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str) -> None:
    path = tmp_path / "ckpt.pt"
    if content == "garbage":
        path.write_bytes(b"\x00" * 100)
    assert run_cli(capsys, "train", "--resume", str(path), "--outdir", str(tmp_path)) != 0
    one_error_line(capsys, "checkpoint" if content == "missing" else "not a readable facegan checkpoint")


def test_resume_auto_without_runs(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert run_cli(capsys, "train", "--resume", "auto", "--outdir", str(tmp_path)) != 0
    one_error_line(capsys, "found no run with a checkpoint")


def test_resume_refuses_architecture_changes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert run_cli(capsys, "train", "--resume", "auto", "--ngf", "32", "--outdir", str(tmp_path)) != 0
    one_error_line(capsys, "--ngf cannot change when resuming")


def test_resume_with_other_dataset(capsys: pytest.CaptureFixture[str], prepared: Path,
                                   tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    assert main(["train", "--data", str(prepared), *TINY, "--batch-size", "16", "--steps", "2",
                 "--outdir", str(runs), "--quiet"]) == 0
    # swap the data behind the run's back: resume must refuse instead of silently mixing datasets
    import json

    man = json.loads((prepared / "manifest.json").read_text())
    man["content_hash"] = "sha256:other"
    (prepared / "manifest.json").write_text(json.dumps(man))
    capsys.readouterr()
    assert run_cli(capsys, "train", "--resume", "auto", "--steps", "4", "--outdir", str(runs)) != 0
    one_error_line(capsys, "differs from the one this checkpoint was trained on")


def test_console_entry_point_and_module() -> None:
    out = subprocess.run([sys.executable, "-m", "facegan", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "prepare" in out.stdout and "train" in out.stdout
