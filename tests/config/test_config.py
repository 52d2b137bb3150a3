"""The config is the single source of every `facegan train` setting: flags, presets, files, migrations
(read and checked by jsonargparse, facegan/config/files.py)."""

from __future__ import annotations

import argparse
import dataclasses
import re
import typing
from pathlib import Path
from typing import Any

import pytest

from facegan.cli.main import main
from facegan.cli.train import given_settings, train_verb
from facegan.config.check import choices_of, field_hints, option
from facegan.config.files import (
    load_config_file,
    migrate_config,
    preset_config,
    preset_names,
    resolve_config,
    resumable_fields,
    to_yaml,
)
from facegan.config.gan import D_NORMS
from facegan.config.schema import (
    AMP_MODES,
    CONFIG_SCHEMA,
    GANConfig,
    PerfConfig,
    RunConfig,
    section_types,
)
from facegan.errors import FaceganError

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


def train_parser() -> argparse.ArgumentParser:
    return train_verb().parser  # type: ignore[no-any-return]


def config_fields() -> list[tuple[str, dataclasses.Field[Any]]]:
    return [(sec, f) for sec, kind in section_types().items() for f in dataclasses.fields(kind)]


def actions_by_dest() -> dict[str, argparse.Action]:
    """Each config field's flag by field name (the parser's dest is `section.field`)."""
    return {a.dest.split(".")[-1]: a for a in train_parser()._actions}


def given(*argv: str) -> dict[str, Any]:
    return given_settings(train_verb(), list(argv))


def run_cli(*argv: str) -> int:
    try:
        return main(list(argv))
    except SystemExit as exc:  # argparse errors and --help
        return int(exc.code or 0)


def one_error_line(capsys: pytest.CaptureFixture[str], *expect: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for text in expect:
        assert text in err, err
    return err


def sample_value(kind: type, name: str) -> Any:
    """A valid value different from the field's default, as (flag text, parsed value)."""
    f = next(f for f in dataclasses.fields(kind) if f.name == name)
    choices = choices_of(field_hints(kind)[name])
    if choices:
        return next(c for c in choices if c != f.default)
    hint = field_hints(kind)[name]
    base = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
    return {
        int: 32 if name == "size" else 7,
        float: 0.25,
        str: "color" if name == "diffaug" else "x",
        bool: True,
    }[base]


# ----------------------------------------------------------------------------- flags from fields


def test_every_field_has_a_flag_that_sets_exactly_it() -> None:
    for sec, f in config_fields():
        value = sample_value(section_types()[sec], f.name)
        if f.name == "channels":
            value = 4
        argv = [option(f.name)] if value is True else [option(f.name), str(value)]
        assert given(*argv) == {f.name: value}, f.name
    # channels is meant for config files only: its help says so
    assert "config file" in actions_by_dest()["channels"].help


def test_no_flag_given_means_nothing_set() -> None:
    assert given() == {}


def _parse_default(text: str, default: Any) -> Any:
    if default is None:
        return None if text == "unset" else text
    if isinstance(default, bool):
        return {"on": True, "off": False}[text]
    if isinstance(default, (int, float)):
        return type(default)(text)
    return "" if text == "none" else text


def test_help_shows_each_dataclass_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("train", "--help") == 0
    shown = " ".join(capsys.readouterr().out.split())  # undo argparse's line wrapping
    actions = actions_by_dest()
    for _, f in config_fields():
        if f.name == "channels":
            continue
        help_text = " ".join(actions[f.name].help.split())
        assert help_text in shown, f.name
        m = re.search(r"\(default: ([^()]*)\)$", help_text)
        assert m, f"{option(f.name)} does not show its default: {help_text!r}"
        assert _parse_default(m.group(1), f.default) == f.default, f.name


def test_help_examples() -> None:
    actions = actions_by_dest()
    assert actions["lr_g"].help.endswith("(default: 0.0002)")
    assert actions["size"].help.endswith("(default: 64)")
    assert actions["diffaug"].help.endswith("(default: none)")
    assert actions["spectral_norm"].option_strings == ["--spectral-norm", "--no-spectral-norm"]


def test_choices_are_defined_once() -> None:
    assert choices_of(field_hints(PerfConfig)["amp"]) == AMP_MODES
    assert choices_of(field_hints(GANConfig)["d_norm"]) == D_NORMS
    for sec, f in config_fields():
        kind = section_types()[sec]
        if choices_of(field_hints(kind)[f.name]):
            with pytest.raises(FaceganError, match=f"{option(f.name)} must be one of"):
                kind(**{f.name: "no-such-choice"})
    with pytest.raises(FaceganError, match="--amp must be one of auto, off, bf16, fp16, got 'fp8'"):
        PerfConfig(amp="fp8")


def test_resumable_set_lives_with_the_fields() -> None:
    perf = {f.name for f in dataclasses.fields(PerfConfig)}
    assert resumable_fields() == {
        "steps",
        "epochs",
        "device",
        "log_every",
        "sample_every",
        "ckpt_every",
        "keep_ckpts",
        "eval_every",
        "eval_metrics",
        "eval_num_fake",
        "inception_weights",
        "on_nan",
        "nan_retries",
        "tracker",
        "sync_bn",
        "lr_rampdown",
        *perf,
    }


@pytest.mark.parametrize(
    "argv,expect",
    [
        (["--lr", "0.001"], {"lr_g": 0.001, "lr_d": 0.001}),
        (["--lr", "0.001", "--lr-g", "0.01"], {"lr_g": 0.01, "lr_d": 0.001}),
        (["--diffaug", "none"], {"diffaug": ""}),
        (["--diffaug", "color"], {"diffaug": "color"}),
        (["--hflip"], {"hflip": True}),
        (["--no-spectral-norm"], {"spectral_norm": False}),
        (["--steps", "3"], {"steps": 3}),
    ],
)
def test_special_flags(argv: list[str], expect: dict[str, Any]) -> None:
    assert given(*argv) == expect


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
