"""Bad input on the command line: one clear line on stderr, a non-zero exit, nothing lost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from facegan.cli.main import main
from facegan.data.prepare import prepare
from tests.conftest import make_image_folder, make_zip

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


@pytest.mark.parametrize(
    "argv,expect",
    [
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
    ],
)
def test_bad_flags_and_paths(
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    expect: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
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


def test_batch_larger_than_dataset(
    capsys: pytest.CaptureFixture[str], prepared: Path, tmp_path: Path
) -> None:
    code = run_cli(
        capsys,
        "train",
        "--data",
        str(prepared),
        *TINY,
        "--batch-size",
        "128",
        "--outdir",
        str(tmp_path / "runs"),
    )
    assert code != 0
    one_error_line(capsys, "larger than the dataset (64 images)", "--batch-size 64")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_outdir_that_is_a_file(capsys: pytest.CaptureFixture[str], prepared: Path, tmp_path: Path) -> None:
    """An --outdir that names a file was a FileExistsError traceback; the file stays as it was."""
    (tmp_path / "runs").write_text("mine")
    code = run_cli(
        capsys,
        "train",
        "--data",
        str(prepared),
        *TINY,
        "--batch-size",
        "8",
        "--outdir",
        str(tmp_path / "runs"),
    )
    assert code == 2
    one_error_line(capsys, "is a file, not a folder", "choose another --outdir")
    assert (tmp_path / "runs").read_text() == "mine"


def test_runs_folder_that_cannot_be_made_is_one_error(tmp_path: Path) -> None:
    from facegan.errors import FaceganError
    from facegan.tracking.runs import new_run_dir

    (tmp_path / "afile").write_text("mine")
    with pytest.raises(FaceganError, match=r"cannot create the runs folder .* choose another --outdir"):
        new_run_dir(tmp_path / "afile" / "runs", "x")  # NotADirectoryError underneath


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


def test_resume_auto_starts_then_continues(
    capsys: pytest.CaptureFixture[str], prepared: Path, tmp_path: Path
) -> None:
    """One command line serves the first start and every restart: --resume auto with nothing to resume
    starts a new run (from the flags), and the same line later continues it instead of starting another."""
    from facegan.networks.checkpoint import load_checkpoint

    runs = tmp_path / "runs"
    argv = [
        "train",
        "--data",
        str(prepared),
        *TINY,
        "--batch-size",
        "16",
        "--seed",
        "3",
        "--preset",
        "dcgan",
        "--outdir",
        str(runs),
        "--resume",
        "auto",
    ]
    assert main([*argv, "--steps", "2"]) == 0
    assert "no run with a checkpoint" in capsys.readouterr().err
    (run,) = runs.iterdir()
    assert load_checkpoint(run)["step"] == 2 and load_checkpoint(run)["config"]["train"]["seed"] == 3
    assert main([*argv, "--steps", "4"]) == 0
    assert [p.name for p in runs.iterdir()] == [run.name]  # continued, not a second run
    assert load_checkpoint(run)["step"] == 4


def _first_run(prepared: Path, runs: Path, *extra: str) -> list[str]:
    """Train 2 steps; returns the command line so a test can repeat it."""
    argv = [
        "train",
        "--data",
        str(prepared),
        *TINY,
        "--batch-size",
        "16",
        "--seed",
        "3",
        "--preset",
        "dcgan",
        *extra,
        "--outdir",
        str(runs),
        "--quiet",
    ]
    assert main([*argv, "--steps", "2"]) == 0
    return argv


def test_resume_refuses_architecture_changes(
    capsys: pytest.CaptureFixture[str], prepared: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    _first_run(prepared, runs)
    capsys.readouterr()
    assert run_cli(capsys, "train", "--resume", "auto", "--ngf", "32", "--outdir", str(runs)) == 2
    one_error_line(capsys, "--ngf (checkpoint 8, given 32): cannot change when resuming")


def test_resume_accepts_the_original_command(
    capsys: pytest.CaptureFixture[str], prepared: Path, tmp_path: Path
) -> None:
    """The same `facegan train ...` line plus --resume auto continues; only real changes are refused."""
    from facegan.networks.checkpoint import load_checkpoint

    argv = _first_run(prepared, tmp_path / "runs", "--lr", "2e-4", "--hflip")
    assert main([*argv, "--resume", "auto", "--steps", "4"]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert load_checkpoint(run)["step"] == 4
    capsys.readouterr()
    assert run_cli(capsys, *argv, "--resume", "auto", "--steps", "6", "--seed", "4", "--preset", "tiny") == 2
    one_error_line(
        capsys,
        "--seed (checkpoint 3, given 4)",
        "--preset (checkpoint 'dcgan', given 'tiny')",
        "cannot change when resuming",
    )
    assert load_checkpoint(run)["step"] == 4


def test_resume_from_a_moved_dataset(
    capsys: pytest.CaptureFixture[str], prepared: Path, tmp_path: Path
) -> None:
    import json
    import shutil

    from facegan.networks.checkpoint import load_checkpoint

    runs = tmp_path / "runs"
    argv = _first_run(prepared, runs)
    moved = shutil.move(prepared, tmp_path / "moved")
    capsys.readouterr()
    assert run_cli(capsys, "train", "--resume", "auto", "--steps", "4", "--outdir", str(runs)) == 2
    one_error_line(capsys, "is gone", "resume with --data NEW_PATH")
    assert main([*argv, "--resume", "auto", "--steps", "4", "--data", str(moved)]) == 0
    (run,) = runs.iterdir()
    assert load_checkpoint(run)["step"] == 4
    assert load_checkpoint(run)["config"]["train"]["data"] == str(moved)  # the new path is recorded
    assert json.loads((run / "config.json").read_text())["train"]["data"] == str(moved)
    # other images at the new path are still refused
    other = prepare(
        str(make_image_folder(tmp_path / "other-src", 48, nested=False)),
        tmp_path / "other",
        size=32,
        quiet=True,
    ).out
    capsys.readouterr()
    assert (
        run_cli(
            capsys, "train", "--resume", "auto", "--steps", "6", "--data", str(other), "--outdir", str(runs)
        )
        == 2
    )
    one_error_line(capsys, "differs from the one this checkpoint was trained on")


def test_resume_with_other_dataset(
    capsys: pytest.CaptureFixture[str], prepared: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    assert (
        main(
            [
                "train",
                "--data",
                str(prepared),
                *TINY,
                "--batch-size",
                "16",
                "--steps",
                "2",
                "--outdir",
                str(runs),
                "--quiet",
            ]
        )
        == 0
    )
    # swap the data behind the run's back: resume must refuse instead of silently mixing datasets
    import json

    man = json.loads((prepared / "manifest.json").read_text())
    man["content_hash"] = "sha256:other"
    (prepared / "manifest.json").write_text(json.dumps(man))
    capsys.readouterr()
    assert run_cli(capsys, "train", "--resume", "auto", "--steps", "4", "--outdir", str(runs)) != 0
    one_error_line(capsys, "differs from the one this checkpoint was trained on")


@pytest.mark.parametrize("argv", [["generate", "--checkpoint", ""], ["serve", "--checkpoint", "a="]])
def test_empty_checkpoint_path_says_so(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    """An empty path was read as the current folder and reported as a missing latest.pt."""
    monkeypatch.chdir(tmp_path)
    assert run_cli(capsys, *argv) == 2
    one_error_line(capsys, "no checkpoint given")


@pytest.mark.parametrize(
    "argv,expect",
    [
        (["generate", "--nrow", "-1"], "--nrow must be >= 1, got -1"),
        (["generate", "--interpolate", "--seed", "1,2", "--display-size", "-5"], "--display-size must be"),
        (["generate", "--display-size", "100000"], "--display-size must be between"),
        (["generate", "--out", "{file}/grid.png"], "could not write"),
        (["generate", "--seed", "1,2", "--out", "{file}/faces"], "could not write"),
        (["generate", "--interpolate", "--seed", "1,2", "--out", "{file}/walk.gif"], "could not write"),
        (["export", "--out", "{file}/g.safetensors"], "could not write"),
        (["generate", "--out", "x.gif"], "is an animation; add --interpolate"),
        (["generate", "--n", "10001"], "--n must be between 1 and 10,000"),
        (["generate", "--seed", "0-10000"], "names 10,001 faces; at most 10,000"),
        (["generate", "--seed", "0-999999999"], "names 1,000,000,000 faces"),
        (["generate", "--seed", str(2**63 - 2), "--n", "5"], "runs past the last seed"),
        (["generate", "--interpolate", "--seed", "0-999", "--frames", "600"], "at most 10,000"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_bad_generate_and_export_inputs(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    expect: str,
) -> None:
    from facegan.config.schema import ModelConfig
    from facegan.networks.checkpoint import export_generator
    from facegan.networks.factory import build_models

    monkeypatch.chdir(tmp_path)
    cfg = ModelConfig(size=32, latent_dim=16, ngf=8, ndf=8)
    model = export_generator(build_models(cfg)[0], cfg, tmp_path / "g.safetensors")
    (tmp_path / "a-file").write_bytes(b"")  # a file where a folder is needed: unwritable even for root
    argv = [a.replace("{file}", str(tmp_path / "a-file")) for a in argv]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert run_cli(capsys, *argv, "--checkpoint", str(model)) == 2
    one_error_line(capsys, expect)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, no temp files


def test_console_entry_point_and_module() -> None:
    out = subprocess.run([sys.executable, "-m", "facegan", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "prepare" in out.stdout and "train" in out.stdout
