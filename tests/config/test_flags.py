"""Every config field is a `facegan train` flag, its default shown in --help (facegan/config/check.py)."""

from __future__ import annotations

import argparse
import dataclasses
import re
import typing
from typing import Any

import pytest

from facegan.cli.train import given_settings, train_verb
from facegan.config.check import choices_of, field_hints, option
from facegan.config.files import resumable_fields
from facegan.config.gan import D_NORMS
from facegan.config.schema import AMP_MODES, GANConfig, PerfConfig, section_types
from facegan.errors import FaceganError
from tests.config.helpers import run_cli


def train_parser() -> argparse.ArgumentParser:
    return train_verb().parser  # type: ignore[no-any-return]


def config_fields() -> list[tuple[str, dataclasses.Field[Any]]]:
    return [(sec, f) for sec, kind in section_types().items() for f in dataclasses.fields(kind)]


def actions_by_dest() -> dict[str, argparse.Action]:
    """Each config field's flag by field name (the parser's dest is `section.field`)."""
    return {a.dest.split(".")[-1]: a for a in train_parser()._actions}


def given(*argv: str) -> dict[str, Any]:
    return given_settings(train_verb(), list(argv))


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
