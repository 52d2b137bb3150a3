"""Hostile or damaged checkpoints and exports: one clear line naming the file, and nothing full-size is
built before the weights have been checked against the config (on the meta device)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

import facegan.sampling.generate
from facegan.cli.main import main
from facegan.config.schema import ModelConfig, RunConfig
from facegan.errors import FaceganError
from facegan.networks.checkpoint import CONFIG_KEY, export_generator, save_checkpoint
from facegan.networks.factory import build_models

SMALL = ModelConfig(size=32, latent_dim=16, ngf=8, ndf=8)


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("ngf", 1_000_000, "--ngf must be at most 1024"),
        ("ndf", 1025, "--ndf must be at most 1024"),
        ("latent_dim", 10**9, "--latent-dim must be at most 4096"),
        ("ngf", "64", "--ngf must be an integer"),
        ("ngf", 64.0, "--ngf must be an integer"),
        ("latent_dim", True, "--latent-dim must be an integer"),
        ("arch", 3, "--arch must be a string"),
    ],
)
def test_model_config_checks_types_and_ranges(field: str, value: Any, message: str) -> None:
    with pytest.raises(FaceganError, match=message):
        ModelConfig(**{**SMALL.__dict__, field: value})


def test_other_sections_check_types_too() -> None:
    with pytest.raises(FaceganError, match="--lr-g must be a number"):
        RunConfig.from_dict({"optim": {"lr_g": "fast"}})
    with pytest.raises(FaceganError, match="--batch-size must be an integer"):
        RunConfig.from_dict({"train": {"batch_size": 1.5}})
    assert RunConfig.from_dict({"optim": {"lr_g": 1}}).optim.lr_g == 1  # an int is a fine float


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The device type of every generator load_generator builds (meta = shape check only)."""
    seen: list[str] = []
    real = facegan.sampling.generate.build_generator

    def spy(cfg: ModelConfig) -> torch.nn.Module:
        seen.append(torch.empty(0).device.type)  # the default device in force for this build
        return real(cfg)

    monkeypatch.setattr(facegan.sampling.generate, "build_generator", spy)
    yield seen


def _ckpt(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    g, d = build_models(SMALL)
    state = {"config": RunConfig(model=SMALL).to_dict(), "step": 1, "G": g.state_dict(), "D": d.state_dict()}
    change(state)
    return save_checkpoint(tmp_path / "checkpoints", state, 1, keep=5)


def _set_model(**model: Any) -> Callable[[dict[str, Any]], None]:
    return lambda s: s["config"]["model"].update(model)


def _shrink_g(s: dict[str, Any]) -> None:
    s["G"] = build_models(ModelConfig(size=32, latent_dim=16, ngf=4, ndf=8))[0].state_dict()


CKPT_CASES = {
    "huge-ngf": (_set_model(ngf=1_000_000), "invalid config (--ngf must be at most 1024"),
    "string-ngf": (_set_model(ngf="8"), "--ngf must be an integer"),
    "config-not-dict": (lambda s: s.update(config=[1, 2]), "no config mapping"),
    # A config within the limits (256 px, 24 times the parameters) whose file holds a tiny G: refused
    # from the meta-device shapes without allocating the model it claims to be.
    "big-config-small-weights": (_set_model(ngf=64, size=256), "'main.0.weight' has shape"),
    "wrong-shapes": (_shrink_g, "'main.0.weight' has shape (16, 16, 4, 4) but the config needs (16, 32"),
    "no-G": (lambda s: s.pop("G"), "no generator weights"),
    "G-not-dict": (lambda s: s.update(G=[1, 2]), "are not a mapping of tensors (got list)"),
    "missing-key": (lambda s: s["G"].pop("main.1.running_mean"), "'main.1.running_mean' is missing"),
    "extra-key": (lambda s: s["G"].update(extra=torch.zeros(1)), "unexpected key 'extra'"),
    "not-a-tensor": (lambda s: s["G"].update({"main.0.weight": 3}), "'main.0.weight' is not a tensor"),
}


@pytest.mark.parametrize("case", CKPT_CASES)
def test_crafted_checkpoint_is_one_line_before_any_full_build(
    case: str, tmp_path: Path, builds: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    change, message = CKPT_CASES[case]
    path = _ckpt(tmp_path, change)
    code = main(["generate", "--checkpoint", str(path), "--n", "1", "--out", str(tmp_path / "out.png")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert message in err and str(path) in err
    assert "cpu" not in builds  # nothing full-size was built for a file that does not fit
    assert not (tmp_path / "out.png").exists()


def _export(path: Path, cfg: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Path:
    save_file(tensors, str(path), metadata={CONFIG_KEY: json.dumps(cfg), "format": "facegan-generator"})
    return path


def test_crafted_exports_are_one_line(tmp_path: Path, builds: list[str]) -> None:
    g = build_models(SMALL)[0]
    good = export_generator(g, SMALL, tmp_path / "good.safetensors")
    tensors = {k: v.contiguous() for k, v in g.state_dict().items()}
    cases = {
        "huge": (
            _export(tmp_path / "huge.safetensors", {**SMALL.__dict__, "ngf": 10**6}, tensors),
            "invalid generator config (--ngf must be at most 1024",
        ),
        "shapes": (
            _export(tmp_path / "shapes.safetensors", {**SMALL.__dict__, "ngf": 16}, tensors),
            "'main.0.weight' has shape (16, 32, 4, 4) but the config needs (16, 64, 4, 4)",
        ),
        "missing": (
            _export(
                tmp_path / "missing.safetensors",
                SMALL.__dict__,
                {k: v for k, v in tensors.items() if k != "main.4.weight"},
            ),
            "'main.4.weight' is missing",
        ),
    }
    for path, message in cases.values():
        with pytest.raises(FaceganError) as info:
            facegan.sampling.generate.load_generator(path)
        assert message in str(info.value) and str(path) in str(info.value)
        assert "\n" not in str(info.value)
    assert "cpu" not in builds
    builds.clear()
    facegan.sampling.generate.load_generator(good)  # the control: checked on meta, then built for real
    assert builds == ["meta", "cpu"]


def test_serve_refuses_a_crafted_file_at_start_up(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("hypercorn")
    path = _ckpt(tmp_path, _shrink_g)
    code = main(["serve", "--checkpoint", str(path), "--port", "0"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "'main.0.weight' has shape" in err


def test_resume_checks_weights_against_the_config_first(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    assert (
        main(
            [
                "train",
                "--data",
                str(prepared),
                "--size",
                "32",
                "--latent-dim",
                "16",
                "--ngf",
                "8",
                "--ndf",
                "8",
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
    latest = next(runs.glob("*/checkpoints/latest.pt"))
    ckpt = torch.load(latest, weights_only=True)
    for change, message in [
        (lambda c: c["D"].update({"main.0.weight": torch.zeros(3)}), "discriminator weights in"),
        (lambda c: c["config"]["model"].update(ndf=10**6), "--ndf must be at most 1024"),
        (lambda c: c.pop("opt_d"), "has no 'opt_d' entry"),
    ]:
        bad = dict(ckpt, config=json.loads(json.dumps(ckpt["config"])), D=dict(ckpt["D"]))
        change(bad)
        path = tmp_path / "bad.pt"
        torch.save(bad, path)
        capsys.readouterr()
        assert main(["train", "--resume", str(path), "--outdir", str(tmp_path / "other"), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and str(path) in err, err
