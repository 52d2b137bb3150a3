"""A run's config as files and flags: the jsonargparse parser of its layout, presets, `--config` files,
the layering defaults < preset < file < flags, and the migrations of configs inside old checkpoints.

One parser (`add_run_arguments`) serves the command line and the files: each field of a section is the
flag `--latent-dim` and the file key `model.latent_dim`, typed by the field's annotation, so a flag, a
preset, a `--config` file and `--print-config`'s output are read and written by the same code.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import typing
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from facegan.config.check import check_bools, explain, field_hints, option, shown
from facegan.config.schema import CONFIG_SCHEMA, RunConfig, section_types
from facegan.errors import FaceganError
from facegan.storage.untrusted import MAX_CONFIG_BYTES, parse_yaml, read_regular

DEFAULT_PRESET = "dcgan"
# Help-section titles: one per config section, plus "eval" for the evaluation fields of `train`.
GROUPS = {
    "model": "model (fixed for the life of a run)",
    "optim": "optimizer: Adam for G and D (fixed for the life of a run)",
    "train": "run",
    "eval": "evaluation during training (metrics.jsonl, TensorBoard, checkpoints/best.pt)",
    "perf": "speed (same training semantics; 'auto' picks per device)",
    "gan": "stabilizers (all off in dcgan; fixed for the life of a run)",
}
LR_HELP = "learning rate of both G and D (sets --lr-g and --lr-d unless they are given)"
HEADER = "facegan train config; edit and run: facegan train --config FILE.yaml"


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


def field_argument(kind: type, f: dataclasses.Field[Any], dest: str) -> tuple[list[str], dict[str, Any]]:
    """(option strings, add_argument keywords) of the field `f` of dataclass `kind`: typed by its
    annotation (jsonargparse checks flag and file values alike), a bool as --x/--no-x, a field with a
    text parser (`setting(parse=...)`) as text that the parser converts when the dataclass is built."""
    hint = field_hints(kind)[f.name]
    repeatable = hint == tuple[str, ...] and not f.metadata.get("parse")
    text = f.metadata.get("help", "") + ("" if repeatable else f" (default: {render_default(f.default)})")
    kwargs: dict[str, Any] = {"dest": dest, "default": f.default, "help": text.replace("%", "%%")}
    if not f.metadata.get("flag", True):  # meant for config files (the flag exists, its help says so)
        kwargs["help"] = text + "; set it in a config file"
    if f.metadata.get("metavar"):
        kwargs["metavar"] = f.metadata["metavar"]
    if hint is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif repeatable:
        kwargs.update(action="append", type=str, default=list(typing.cast(tuple[str, ...], f.default)))
    elif f.metadata.get("parse"):  # text, converted when the dataclass is built
        kwargs["type"] = str
        if isinstance(f.default, tuple):
            kwargs["default"] = ",".join(f.default)
    else:
        kwargs["type"] = hint
    return [option(f.name)], kwargs


def converted(kind: type, values: dict[str, Any]) -> dict[str, Any]:
    """Parsed values of fields of `kind` as the fields hold them: text parsers applied, lists tuples."""
    out = dict(values)
    for f in dataclasses.fields(kind):
        value, parse = out.get(f.name), f.metadata.get("parse")
        if parse is not None and isinstance(value, str):
            out[f.name] = parse(value)
        elif isinstance(value, list):
            out[f.name] = tuple(value)
    return out


def build(kind: type, values: dict[str, Any]) -> Any:
    """The dataclass `kind` from parsed values (see `converted`)."""
    return kind(**converted(kind, values))


def add_run_arguments(parser: Any) -> None:
    """Every setting of a run as a flag and a file key of the jsonargparse `parser`, grouped by section,
    plus `--preset`, the `--lr` shorthand and the file's `schema`."""
    parser.add_argument(
        "--preset",
        type=str | None,
        default=None,
        help=f"a named starting config: {', '.join(preset_names())} (default {DEFAULT_PRESET}); "
        "see facegan/presets/*.yaml",
    )
    parser.add_argument(
        "--schema",
        type=int,
        default=CONFIG_SCHEMA,
        help=f"layout version of the config (default: {CONFIG_SCHEMA}); a file of another one is refused",
    )
    groups: dict[str, Any] = {}
    for sec, kind in section_types().items():
        for f in dataclasses.fields(kind):
            key = f.metadata.get("group") or sec
            if key not in groups:
                groups[key] = parser.add_argument_group(GROUPS[key])
                if key == "optim":
                    groups[key].add_argument("--lr", type=float | None, default=None, help=LR_HELP)
            names, kwargs = field_argument(kind, f, f"{sec}.{f.name}")
            groups[key].add_argument(*names, **kwargs)


@functools.cache
def run_parser() -> Any:
    """A parser of the run config alone (what `load_config_file` and presets are read with)."""
    from facegan.config.parser import Parser

    parser = Parser(prog="facegan config", add_help=False)
    add_run_arguments(parser)
    return parser


def run_config(ns: Any, given: Any = None) -> RunConfig:
    """The RunConfig of a parsed namespace; `--lr` sets both rates unless `given` (the flags typed)
    names --lr-g or --lr-d."""
    if ns.get("schema") != CONFIG_SCHEMA:
        raise FaceganError(
            f"schema {ns.get('schema')!r} is not this facegan's config schema ({CONFIG_SCHEMA}); "
            f"re-create the file with --print-config"
        )
    sections = {sec: build(kind, ns[sec].as_dict()) for sec, kind in section_types().items()}
    if ns.get("lr") is not None:
        rates = {k: ns.lr for k in ("lr_g", "lr_d") if given is None or f"optim.{k}" not in given}
        sections["optim"] = dataclasses.replace(sections["optim"], **rates)
    return RunConfig(preset=ns.get("preset") or DEFAULT_PRESET, **sections)


def to_yaml(cfg: RunConfig) -> str:
    """The complete config as a YAML config file, in field order, ready to edit and pass to --config."""
    from jsonargparse import Namespace

    ns = Namespace(preset=cfg.preset, schema=CONFIG_SCHEMA)
    for sec, kind in section_types().items():
        for f in dataclasses.fields(kind):
            value = getattr(getattr(cfg, sec), f.name)
            ns[f"{sec}.{f.name}"] = list(value) if isinstance(value, tuple) else value
    return f"# {HEADER}\n" + str(run_parser().dump(ns, skip_unset=False))


# ----------------------------------------------------------------------------- presets


def preset_names() -> list[str]:
    """The shipped presets, the default first, then alphabetically."""
    names = sorted(p.name[: -len(".yaml")] for p in _presets_dir().iterdir() if p.name.endswith(".yaml"))
    return sorted(names, key=lambda n: n != DEFAULT_PRESET)


def _presets_dir() -> Any:
    return resources.files("facegan") / "presets"


@functools.cache
def preset_sections(name: str) -> dict[str, Any]:
    """The partial config file of a shipped preset, as written (checked with the run parser)."""
    if name not in preset_names():
        raise FaceganError(f"unknown preset {name!r}; choose one of: {', '.join(preset_names())}")
    where = f"preset {name}"
    raw = read_yaml_mapping((_presets_dir() / f"{name}.yaml").read_text(encoding="utf-8"), where)
    if "preset" in raw or "schema" in raw:  # a preset cannot name another preset
        raise FaceganError(f"{where}: only config sections belong in a preset, not 'preset' or 'schema'")
    parse_file(run_parser(), raw, where)
    return raw


def preset_config(name: str) -> RunConfig:
    """The RunConfig of a named preset."""
    return apply_sections(RunConfig(preset=name), preset_sections(name))


def __getattr__(name: str) -> Any:
    """`PRESETS` ({name: partial sections}), read from the preset files on first use."""
    if name == "PRESETS":
        return {n: copy.deepcopy(preset_sections(n)) for n in preset_names()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ----------------------------------------------------------------------------- config files (YAML)


def read_yaml_mapping(text: str, where: str) -> dict[str, Any]:
    """A config file's text as a mapping; size and nesting bounded and YAML aliases refused before
    anything is built from it (facegan.storage.untrusted.parse_yaml)."""
    raw = parse_yaml(text, where)
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise FaceganError(f"{where} must hold a mapping of settings, not a {type(raw).__name__}")
    return raw


def read_config_yaml(path: str | Path) -> dict[str, Any]:
    """A `--config` file's mapping, unchecked; a FIFO or device is refused rather than waited on, and a
    file larger than any config is refused before it is read."""
    try:
        text = read_regular(path, "--config", MAX_CONFIG_BYTES).decode("utf-8")
    except UnicodeDecodeError as err:
        raise FaceganError(f"--config {str(path)!r}: cannot read it ({err})") from None
    return read_yaml_mapping(text, str(path))


def parse_file(parser: Any, raw: dict[str, Any], where: str, namespace: Any = None) -> Any:
    """`raw` (a config file's mapping) read through the jsonargparse `parser` on top of `namespace`
    (default: nothing); every key and type checked, a mistake one line naming the file and the key."""
    from argparse import ArgumentError

    from jsonargparse import Namespace

    from facegan.config.parser import UsageError

    base = parser.get_defaults()
    for key, value in raw.items():
        if isinstance(base.get(key), Namespace) and not isinstance(value, dict):
            raise FaceganError(f"{where}: {key} must be a mapping of its settings, got {shown(value)}")
    # A repeatable flag (--edit, --checkpoint) is a list in a file; jsonargparse would read it as text.
    repeated = {a.dest for a in parser._actions if isinstance(a, argparse._AppendAction)}
    lists = {k: v for k, v in raw.items() if k in repeated}
    for key, value in lists.items():
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise FaceganError(f"{where}: {key} must be a list of strings, got {shown(value)}")
    try:
        rest = {k: v for k, v in raw.items() if k not in repeated}
        ns = parser.parse_object(rest, namespace=namespace or Namespace(), defaults=False)
    except UsageError as err:
        raise FaceganError(f"{where}: {explain(parser, err.raw)}") from None
    except (ArgumentError, TypeError, ValueError, KeyError) as err:
        raise FaceganError(f"{where}: {explain(parser, str(err))}") from None
    check_bools(parser, ns, where)
    for key, value in lists.items():
        ns[key] = list(value)
    return ns


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read and check a `--config` YAML file of `facegan train`: {"preset"?, "schema"?, section:
    {field: value}} with the values typed; an unknown key or a bad value is one line naming it."""
    raw = read_config_yaml(path)
    ns = parse_file(run_parser(), raw, str(path))
    if ns.get("schema", CONFIG_SCHEMA) != CONFIG_SCHEMA:
        raise FaceganError(
            f"{path}: schema {ns.schema!r} is not this facegan's config schema ({CONFIG_SCHEMA}); "
            f"re-create the file with --print-config"
        )
    return dict(ns.as_dict())


def apply_sections(base: RunConfig, sections: Any) -> RunConfig:
    """`base` with the fields of partial `{section: {field: value}}` (a dict or a jsonargparse
    Namespace, keys already checked) replaced."""
    raw = sections.as_dict() if hasattr(sections, "as_dict") else sections
    changes = {
        sec: build(kind, {**dataclasses.asdict(getattr(base, sec)), **raw[sec]})
        for sec, kind in section_types().items()
        if raw.get(sec)
    }
    return base.replace(**changes)


def resolve_config(preset: str | None, file: dict[str, Any] | None, flags: dict[str, Any]) -> RunConfig:
    """Layer the settings: defaults < preset < config file < flags given on the command line.

    The preset is `preset` (the --preset flag), else the file's `preset`, else dcgan."""
    file = file or {}
    name = preset or file.get("preset") or DEFAULT_PRESET
    return with_overrides(apply_sections(preset_config(name), file), flags)


def flat_fields(sections: dict[str, Any]) -> dict[str, Any]:
    """`{section: {field: value}}` → `{field: value}` (field names are unique across sections)."""
    return {k: v for sec, vals in sections.items() if sec in section_types() for k, v in vals.items()}


def resumable_fields() -> frozenset[str]:
    """Fields a resumed run may change (its length, where it runs, how often it reports)."""
    return frozenset(
        f.name
        for kind in section_types().values()
        for f in dataclasses.fields(kind)
        if f.metadata.get("resumable")
    )


def with_overrides(base: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """Apply flat `{field: value}` overrides (from CLI flags) to whichever section owns each field."""
    sections: dict[str, dict[str, Any]] = {sec: {} for sec in section_types()}
    owners = {f.name: sec for sec, kind in section_types().items() for f in dataclasses.fields(kind)}
    for key, value in overrides.items():
        if key not in owners:
            raise FaceganError(f"unknown config field {key!r}")
        sections[owners[key]][key] = value
    return apply_sections(base, sections)


# ----------------------------------------------------------------------------- checkpoint migrations


def migrate_config(raw: dict[str, Any], schema: int) -> dict[str, Any]:
    """A checkpoint's config dict written under `schema`, brought to CONFIG_SCHEMA.

    Each step pins what the older format meant, so an old checkpoint keeps training as it did even
    after a default changes."""
    if not isinstance(schema, int) or schema < 1:
        raise FaceganError(f"invalid config schema {schema!r} in this checkpoint")
    if schema > CONFIG_SCHEMA:
        raise FaceganError(
            f"this checkpoint was written by a newer facegan (config schema {schema}; this "
            f"one reads up to {CONFIG_SCHEMA}); upgrade facegan to use it"
        )
    out = copy.deepcopy(raw)
    for step in range(schema, CONFIG_SCHEMA):
        out = _MIGRATIONS[step](out)
    return _before_heldout_split(out)


def _before_heldout_split(raw: dict[str, Any]) -> dict[str, Any]:
    """`train.train_on_heldout` came with the held-out split, within schema 2 (no bump, no migration
    then): a checkpoint whose train section lacks it was written before `prepare` held faces out, so
    it trained on every image. Pinned true, so resuming it keeps its data and `facegan evaluate` does
    not call those faces unseen."""
    train = raw.get("train")
    if isinstance(train, dict) and "train_on_heldout" not in train:
        raw["train"] = {**train, "train_on_heldout": True}
    return raw


def _from_schema_1(raw: dict[str, Any]) -> dict[str, Any]:
    """Schema 1: checkpoints before the schema was recorded (facegan 0.1.0 up to R3GAN). Their
    sections may lack fields added later; those get the value that reproduces what the run did."""
    pinned: dict[str, dict[str, Any]] = {
        "model": {"arch": "dcgan"},  # only the DCGAN networks existed
        "gan": {"r2_gamma": 0.0},  # no R2 penalty existed
        "train": {"train_on_heldout": True},  # no held-out split existed: every image was trained on
    }
    if "perf" not in raw:  # written before the speed settings: the plain fp32 path
        pinned["perf"] = {
            "amp": "off",
            "channels_last": "off",
            "compile": "off",
            "fused_adam": "off",
            "resident": "off",
        }
    out = {"preset": raw.get("preset", DEFAULT_PRESET)}
    for sec, kind in section_types().items():
        given = raw.get(sec, {})
        defaults = {f.name: f.default for f in dataclasses.fields(kind)}
        out[sec] = {**defaults, **pinned.get(sec, {}), **given}
    return out


_MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _from_schema_1}
