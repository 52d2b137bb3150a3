"""A run folder and checkpoint written by facegan before the config moved to jsonargparse (commit
1f82b1c, tests/fixtures/run-1f82b1c) still load, resume and generate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from facegan.cli.main import main
from facegan.config.schema import ModelConfig, RunConfig
from facegan.networks.checkpoint import load_checkpoint

FIXTURE = Path(__file__).parents[1] / "fixtures" / "run-1f82b1c" / "00000-synthetic-tiny32"


@pytest.fixture
def old_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FACEGAN_CACHE", str(tmp_path / "cache"))  # the synthetic set is made again here
    run = tmp_path / "runs" / FIXTURE.name
    shutil.copytree(FIXTURE, run)
    return run


def test_old_config_reads_as_it_was_written(old_run: Path) -> None:
    raw = json.loads((old_run / "config.json").read_text())
    cfg = RunConfig.from_dict(raw)
    assert cfg.to_dict() == raw  # every field kept its name, type and value
    assert cfg.preset == "tiny" and cfg.model == ModelConfig(size=32, latent_dim=16, ngf=8, ndf=8)
    assert cfg.train.seed == 5 and cfg.train.batch_size == 16 and cfg.train.tracker == ""
    assert RunConfig.from_dict(load_checkpoint(old_run)["config"]) == cfg


def test_old_run_resumes(old_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert load_checkpoint(old_run)["step"] == 2
    argv = ["train", "--resume", str(old_run), "--steps", "4", "--outdir", str(old_run.parent), "--quiet"]
    assert main(argv) == 0, capsys.readouterr().err
    ckpt = load_checkpoint(old_run)
    assert ckpt["step"] == 4
    assert RunConfig.from_dict(ckpt["config"]).model == ModelConfig(size=32, latent_dim=16, ngf=8, ndf=8)
    assert [p.name for p in old_run.parent.iterdir()] == [old_run.name]  # continued, not a new run
    # the original command line plus --resume continues too; a real change is still refused
    original = ["--preset", "tiny", "--ngf", "8", "--ndf", "8", "--latent-dim", "16", "--seed", "5"]
    assert main(["train", *original, "--resume", str(old_run), "--steps", "6", "--quiet"]) == 0
    assert load_checkpoint(old_run)["step"] == 6
    capsys.readouterr()
    assert main(["train", "--resume", str(old_run), "--steps", "8", "--ngf", "16"]) == 2
    assert "--ngf (checkpoint 8, given 16): cannot change when resuming" in capsys.readouterr().err


@pytest.mark.parametrize("source", ["run folder", "checkpoint", "export"])
def test_old_run_generates(
    old_run: Path, tmp_path: Path, source: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = {
        "run folder": old_run,
        "checkpoint": old_run / "checkpoints" / "latest.pt",
        "export": old_run / "generator.safetensors",
    }[source]
    out = tmp_path / "faces.png"
    assert main(["generate", "--checkpoint", str(path), "--n", "4", "--out", str(out)]) == 0
    assert out.stat().st_size > 0 and "wrote 4 faces" in capsys.readouterr().out
