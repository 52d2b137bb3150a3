"""Presets, `--config` files, --print-config and config migrations (facegan/config/files.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from facegan.config.files import (
    load_config_file,
    migrate_config,
    preset_config,
    preset_names,
    resolve_config,
    to_yaml,
)
from facegan.config.schema import CONFIG_SCHEMA, GANConfig, PerfConfig, RunConfig, section_types
from facegan.errors import FaceganError
from tests.config.helpers import one_error_line, run_cli

# ----------------------------------------------------------------------------- presets


def test_presets_are_shipped_yaml_files() -> None:
    import facegan.config.files as config

    names = preset_names()
    assert names[0] == "dcgan"
    assert set(names) == {"dcgan", "dcgan-z128", "tiny", "dcgan-plus", "r3gan", "sngan-da"}
    assert set(config.PRESETS) == set(names)
    assert config.PRESETS["dcgan-z128"] == {"model": {"latent_dim": 128}}
    r3 = preset_config("r3gan")
    assert (r3.model.arch, r3.gan.loss, r3.gan.r1_gamma, r3.gan.r2_gamma) == ("r3gan", "rpgan", 1.0, 1.0)
    assert isinstance(r3.optim.lr_g, float) and r3.optim.beta1 == 0.0
    assert preset_config("dcgan") == RunConfig()
    with pytest.raises(FaceganError, match="unknown preset 'nope'"):
        preset_config("nope")


# ----------------------------------------------------------------------------- config files


@pytest.mark.parametrize("name", preset_names())
def test_yaml_round_trip(name: str, tmp_path: Path) -> None:
    cfg = resolve_config(name, None, {"steps": 7, "lr_d": 1e-5, "inception_weights": "w.pth", "hflip": True})
    text = to_yaml(cfg)
    (tmp_path / "x.yaml").write_text(text)
    again = resolve_config(None, load_config_file(tmp_path / "x.yaml"), {})
    assert again == cfg
    assert to_yaml(again) == text


def test_precedence_defaults_preset_file_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "run.yaml").write_text("model:\n  size: 64\n  ngf: 16\ngan:\n  loss: hinge\n")
    code = run_cli(
        "train", "--preset", "tiny", "--config", str(tmp_path / "run.yaml"), "--ngf", "8", "--print-config"
    )
    assert code == 0
    (tmp_path / "out.yaml").write_text(capsys.readouterr().out)
    cfg = resolve_config(None, load_config_file(tmp_path / "out.yaml"), {})
    assert cfg.preset == "tiny"
    assert cfg.model.size == 64  # the file beats the preset
    assert cfg.model.ngf == 8  # a flag beats the file
    assert cfg.model.ndf == 32 and cfg.train.batch_size == 64  # the preset beats the defaults
    assert cfg.gan.loss == "hinge" and cfg.model.latent_dim == 100


def test_file_preset_is_used_unless_a_flag_names_another(tmp_path: Path) -> None:
    (tmp_path / "f.yaml").write_text("preset: tiny\noptim:\n  beta1: 0.0\n")
    file = load_config_file(tmp_path / "f.yaml")
    assert resolve_config(None, file, {}).model.size == 32
    cfg = resolve_config("r3gan", file, {})
    assert (cfg.preset, cfg.model.arch, cfg.optim.beta1) == ("r3gan", "r3gan", 0.0)


def test_print_config_reruns_to_the_identical_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        run_cli(
            "train", "--preset", "dcgan-plus", "--size", "128", "--lr", "1e-4", "--hflip", "--print-config"
        )
        == 0
    )
    first = capsys.readouterr().out
    (tmp_path / "run.yaml").write_text(first)
    assert run_cli("train", "--config", str(tmp_path / "run.yaml"), "--print-config") == 0
    assert capsys.readouterr().out == first
    assert f"schema: {CONFIG_SCHEMA}\n" in first and "preset: dcgan-plus\n" in first


def test_yaml_floats_written_the_short_way_are_numbers(tmp_path: Path) -> None:
    # PyYAML (YAML 1.1) reads 2e-4 as a string; a config file must still mean the number.
    (tmp_path / "f.yaml").write_text("optim:\n  lr_g: 2e-4\n  lr_d: 1\n")
    file = load_config_file(tmp_path / "f.yaml")
    assert file["optim"] == {"lr_g": 2e-4, "lr_d": 1.0}


@pytest.mark.parametrize(
    "text,expect",
    [
        ("model:\n  sise: 3\n", "unknown key 'model.sise'"),
        ("modle:\n  size: 32\n", "unknown key 'modle'"),
        ("model: 3\n", "model must be a mapping of its settings"),
        ("train:\n  hflip: 'yes'\n", "train.hflip must be true or false"),
        ("optim:\n  lr_g: fast\n", "optim.lr_g must be a number, got 'fast'"),
        ("perf:\n  amp: fp8\n", "perf.amp must be one of auto, off, bf16, fp16, got 'fp8'"),
        ("model:\n  size: big\n", "model.size must be an integer, got 'big'"),
        ("gan:\n  spectral_norm: 1\n", "gan.spectral_norm must be true or false"),
        ("model:\n  size: 64.5\n", "model.size must be an integer, got '64.5'"),
        ("train:\n  steps: .nan\n", "train.steps must be an integer or null"),
        ("optim:\n  lr_g: .nan\n", "--lr-g must be a finite number"),
        ("- a\n- b\n", "must hold a mapping"),
        ("model: [\n", "is not valid YAML"),
        ("schema: 99\n", "schema 99"),
        ("model:\n  size: 48\n", "power of two"),
        ("gan:\n  d_norm: nope\n", "gan.d_norm must be one of"),
    ],
)
def test_bad_config_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expect: str
) -> None:
    (tmp_path / "run.yaml").write_text(text)
    assert run_cli("train", "--config", str(tmp_path / "run.yaml"), "--print-config") == 2
    one_error_line(capsys, expect)


@pytest.mark.parametrize(
    ("flag", "value", "expect"),
    [
        ("--lr-g", "nan", "--lr-g: invalid float value: 'nan'"),  # was a ValueError traceback from Adam
        ("--lr-d", "0", "--lr-d must be > 0"),
        ("--beta2", "1.5", "--beta2 must be in [0, 1)"),  # was a ValueError traceback from Adam
        ("--beta1", "-0.1", "--beta1 must be in [0, 1)"),
        ("--ema-kimg", "nan", "--ema-kimg: invalid float value"),  # was accepted: NaN passed ">= 0"
        ("--ema-kimg", "inf", "--ema-kimg: invalid float value"),  # was accepted: G_ema never moved
        ("--r1-gamma", "nan", "--r1-gamma: invalid float value"),
    ],
)
def test_bad_numbers_are_one_line(
    flag: str, value: str, expect: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli("train", flag, value, "--print-config") == 2
    one_error_line(capsys, expect)


def test_missing_config_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("train", "--config", str(tmp_path / "none.yaml")) == 2
    one_error_line(capsys, "none.yaml", "cannot read it")


# ----------------------------------------------------------------------------- migrations


def schema1_config() -> dict[str, Any]:
    """A config as facegan wrote it before R3GAN: no arch, no r2_gamma, no perf section."""
    cfg = RunConfig().to_dict()
    del cfg["model"]["arch"], cfg["gan"]["r2_gamma"], cfg["perf"]
    cfg["model"]["size"] = 32
    return cfg


def test_schema1_config_migrates() -> None:
    migrated = migrate_config(schema1_config(), 1)
    cfg = RunConfig.from_dict(migrated)
    assert cfg.model.arch == "dcgan" and cfg.model.size == 32 and cfg.gan.r2_gamma == 0.0
    # Written before the speed settings existed: the plain fp32 path those runs used, not "auto".
    assert cfg.perf == PerfConfig(
        amp="off", channels_last="off", compile="off", fused_adam="off", resident="off"
    )
    # Complete after migration: every field of every section is explicit.
    for sec, kind in section_types().items():
        assert set(migrated[sec]) == {f.name for f in dataclasses.fields(kind)}


def test_schema1_keeps_a_recorded_perf_section() -> None:
    raw = RunConfig(perf=PerfConfig(amp="bf16")).to_dict()
    del raw["gan"]["r2_gamma"]
    cfg = RunConfig.from_dict(migrate_config(raw, 1))
    assert cfg.perf.amp == "bf16" and cfg.gan == GANConfig()


def test_current_schema_is_unchanged_and_newer_is_refused() -> None:
    raw = preset_config("r3gan").to_dict()
    assert migrate_config(raw, CONFIG_SCHEMA) == raw
    with pytest.raises(FaceganError, match="newer facegan"):
        migrate_config(raw, CONFIG_SCHEMA + 1)
    with pytest.raises(FaceganError, match="invalid config schema"):
        migrate_config(raw, 0)
