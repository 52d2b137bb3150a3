"""`facegan train`'s setting flags, generated from the config dataclasses in facegan/config.py (and
`facegan serve`'s, from facegan/serve/config.py, by the same generator).

Each setting is declared once: a field of a config section, with its help text, choices, resumability
and any text parser in `config.setting(...)`. This module turns those fields into argparse flags
(name, type, choices, help with the dataclass default), so adding a setting means adding one field.

Why a 100-line generator and not jsonargparse, tyro or simple-parsing:

* `facegan` reports every bad flag as one line and exits 2 (`cli._Parser.error`); those libraries
  print their own usage blocks, tracebacks-as-help or multi-line validation reports.
* Every flag defaults to None, meaning "not given", so the layers resolve as defaults < preset <
  --config file < flags and a preset or file is overridden only by flags actually typed. Those
  libraries put the dataclass default into the namespace, which makes `--size 64` and no flag at all
  indistinguishable (and would silently undo a preset's size).
* Bools are argparse's BooleanOptionalAction (`--spectral-norm/--no-spectral-norm`), shorthands like
  `--lr` (both learning rates) and text parsers like `--diffaug none` stay plain argparse, and the
  existing flag names, metavars and error lines stay exactly as they were.
* One dependency fewer in a tool whose config is five small frozen dataclasses.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

from facegan.config.schema import field_type, section_types

# Help-section titles: one per config section, plus "eval" for the evaluation fields of `train`.
GROUPS = {
    "model": "model (fixed for the life of a run)",
    "optim": "optimizer: Adam for G and D (fixed for the life of a run)",
    "train": "run",
    "eval": "evaluation during training (metrics.jsonl, TensorBoard, checkpoints/best.pt)",
    "perf": "speed (same training semantics; 'auto' picks per device)",
    "gan": "stabilizers (all off in dcgan; fixed for the life of a run)",
}
# The one flag that is not a field: a shorthand for the two learning rates (a given --lr-g/--lr-d wins).
LR_HELP = "learning rate of both G and D (sets --lr-g and --lr-d)"


def config_fields() -> list[tuple[str, dataclasses.Field[Any]]]:
    """(section, field) of every setting that has a flag, in section and field order."""
    return [
        (sec, f)
        for sec, kind in section_types().items()
        for f in dataclasses.fields(kind)
        if f.metadata.get("flag", True)
    ]


def option(name: str) -> str:
    """The flag of a field: `latent_dim` → `--latent-dim`."""
    return "--" + name.replace("_", "-")


def render_default(value: Any) -> str:
    """A default as the help shows it: 0.0002, on/off, none for "", unset for None."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "none"
    return str(value) if value != "" else "none"


def flag_help(f: dataclasses.Field[Any], repeatable: bool = False) -> str:
    """The help text and the default; a repeatable flag's default (nothing) goes without saying."""
    text = f.metadata.get("help", "")
    if not repeatable:
        text += f" (default: {render_default(f.default)})"
    return text.replace("%", "%%")  # argparse %-formats help strings, so a literal % must be doubled


def flag_kwargs(kind: type, f: dataclasses.Field[Any]) -> dict[str, Any]:
    """argparse keywords of the flag of field `f` of dataclass `kind`: default None (= not given), then
    a bool as --x/--no-x, a tuple without a text parser as a repeatable flag, anything else typed."""
    base, _ = field_type(kind, f.name)
    is_tuple = typing.get_origin(typing.get_type_hints(kind)[f.name]) is tuple
    repeatable = is_tuple and not f.metadata.get("parse")
    kwargs: dict[str, Any] = {"dest": f.name, "default": None, "help": flag_help(f, repeatable)}
    if f.metadata.get("metavar"):
        kwargs["metavar"] = f.metadata["metavar"]
    if base is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
        return kwargs
    kwargs["type"] = f.metadata.get("parse") or base
    if repeatable:
        kwargs["action"] = "append"
    if f.metadata.get("choices"):
        kwargs["choices"] = f.metadata["choices"]
    return kwargs


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """Add one flag per config field (default None = not given) to `parser`, grouped by section."""
    kinds = section_types()
    groups: dict[str, argparse._ArgumentGroup] = {}
    for sec, f in config_fields():
        key = f.metadata.get("group") or sec
        if key not in groups:
            groups[key] = parser.add_argument_group(GROUPS[key])
            if key == "optim":
                groups[key].add_argument("--lr", type=float, default=None, help=LR_HELP)
        groups[key].add_argument(option(f.name), **flag_kwargs(kinds[sec], f))


def add_dataclass_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup, kind: type) -> None:
    """Add one flag per field of the dataclass `kind` (e.g. facegan.serve.config.ServeConfig) to
    `parser`, in field order, skipping fields declared with `setting(..., flag=False)`."""
    for f in dataclasses.fields(kind):
        if f.metadata.get("flag", True):
            parser.add_argument(option(f.name), **flag_kwargs(kind, f))


def given_fields(args: argparse.Namespace, kind: type) -> dict[str, Any]:
    """`{field: value}` of the flags of `kind` actually given, ready for `kind(**...)` (a repeated
    flag's list becomes a tuple, as the field is typed)."""
    given = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(kind)
        if f.metadata.get("flag", True) and getattr(args, f.name, None) is not None
    }
    return {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The flat `{field: value}` of the setting flags actually given (None = not given)."""
    given = {f.name: getattr(args, f.name) for _, f in config_fields() if getattr(args, f.name) is not None}
    if getattr(args, "lr", None) is not None:
        given.setdefault("lr_g", args.lr)
        given.setdefault("lr_d", args.lr)
    return given
