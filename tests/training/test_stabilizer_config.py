"""The stabilizers' config (facegan/config/gan.py): presets, old checkpoints, bad values, flags."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from facegan.cli.main import main
from facegan.config.files import preset_config, with_overrides
from facegan.config.schema import GANConfig, RunConfig
from facegan.errors import FaceganError

# ----------------------------------------------------------------------------- config and CLI


def test_config_section_presets_and_old_checkpoints() -> None:
    assert preset_config("dcgan").gan == GANConfig()
    plus = preset_config("dcgan-plus")
    assert plus.model == preset_config("dcgan").model and plus.train == preset_config("dcgan").train
    assert plus.gan.ema_kimg > 0 and plus.gan.diffaug_ops and plus.gan.loss == "bce"
    assert plus.gan.resolved_d_norm == "batch"  # the seed D, plus EMA and DiffAugment
    sn = preset_config("sngan-da")
    assert sn.gan.spectral_norm and sn.gan.loss == "hinge" and sn.gan.resolved_d_norm == "none"
    raw = plus.to_dict()
    assert RunConfig.from_dict(raw) == plus
    del raw["gan"]  # a checkpoint written before the section existed
    assert RunConfig.from_dict(raw).gan == GANConfig()
    tweaked = with_overrides(plus, {"diffaug": "translation", "ema_kimg": 0.0})
    assert tweaked.gan == dataclasses.replace(plus.gan, diffaug="translation", ema_kimg=0.0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"loss": "hinge", "label_smoothing": 0.1}, "bce loss only"),
        ({"loss": "wgan-gp", "d_norm": "batch"}, "per-sample D"),
        ({"diffaug": "color,zoom"}, "--diffaug must be"),
        ({"diffaug": "color,color"}, "--diffaug must be"),
        ({"r1_every": 0}, "--r1-every must be >= 1"),
        ({"ema_kimg": -1.0}, "--ema-kimg must be >= 0"),
        ({"label_smoothing": 1.0}, "--label-smoothing must be in"),
        ({"mbstd_group": -1}, "--mbstd-group must be >= 0"),
        ({"diffaug_p": 1.5}, "--diffaug-p must be in"),
        ({"diffaug_p": float("nan")}, "--diffaug-p must be a finite number"),
    ],
)
def test_bad_stabilizer_settings_are_one_line_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(FaceganError, match=match):
        GANConfig(**kwargs)


TINY = ["--size", "32", "--latent-dim", "16", "--ngf", "8", "--ndf", "8", "--batch-size", "16"]


def test_cli_flags_reach_the_config_and_cannot_change_on_resume(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    assert (
        main(
            [
                "train",
                "--data",
                str(prepared),
                *TINY,
                "--steps",
                "2",
                "--outdir",
                str(runs),
                "--quiet",
                "--loss",
                "hinge",
                "--ema-kimg",
                "1",
                "--spectral-norm",
                "--diffaug",
                "translation,cutout",
                "--r1-gamma",
                "0.5",
                "--r1-every",
                "2",
                "--gp-weight",
                "5",
                "--lr-d",
                "4e-4",
                "--mbstd-group",
                "4",
            ]
        )
        == 0
    )
    (run,) = runs.iterdir()
    gan = json.loads((run / "config.json").read_text())["gan"]
    assert gan == {
        **GANConfig().__dict__,
        "loss": "hinge",
        "ema_kimg": 1.0,
        "spectral_norm": True,
        "diffaug": "translation,cutout",
        "r1_gamma": 0.5,
        "r1_every": 2,
        "gp_weight": 5.0,
        "mbstd_group": 4,
    }
    assert main(["train", "--resume", str(run), "--steps", "4", "--ema-kimg", "2", "--quiet"]) == 2
    assert "--ema-kimg (checkpoint 1.0, given 2.0): cannot change when resuming" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--data",
                str(prepared),
                *TINY,
                "--steps",
                "1",
                "--outdir",
                str(runs),
                "--preset",
                "sngan-da",
                "--no-spectral-norm",
                "--diffaug",
                "none",
                "--quiet",
            ]
        )
        == 0
    )
    latest = max(runs.iterdir())
    gan = json.loads((latest / "config.json").read_text())["gan"]
    assert gan["spectral_norm"] is False and gan["diffaug"] == "" and gan["loss"] == "hinge"
