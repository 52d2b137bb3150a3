"""How a config field is declared (`setting`) and how a config dataclass checks its values.

Text is parsed and type-checked by jsonargparse: the CLI's flags, `--config` files and presets are
read through jsonargparse parsers built from the fields' annotations (facegan/config/parser.py,
facegan/config/files.py). A dataclass built from values that are already Python objects (the Python
API, a checkpoint's config, torch.hub) converts nothing: `check_fields` only asks whether each value
is an instance of its annotation (`is_a`), so loading a generator does not need jsonargparse. Choices
are `Literal` types for both. What no type says (an upper bound, a finite float) is checked here, once
for every section; jsonargparse's messages are made one line here too (`explain`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable
from typing import Any

from facegan.errors import FaceganError


def setting(
    default: Any,
    help: str,
    *,
    resumable: bool = False,
    parse: Callable[[str], Any] | None = None,
    group: str | None = None,
    flag: bool = True,
    max: float | None = None,
    metavar: str | None = None,
) -> Any:
    """A config field plus what its command-line flag needs.

    help: the flag's help, without the default (that is appended from `default`). resumable: may change
    when a run is resumed. parse: converts the flag's text (e.g. "none" → ""). group: a help section
    other than the dataclass's. flag: False for fields that are set from config files only. max: the
    largest value allowed, checked before anything is built from it. metavar: the flag's placeholder.
    """
    meta = {
        "help": help,
        "resumable": resumable,
        "parse": parse,
        "group": group,
        "flag": flag,
        "max": max,
        "metavar": metavar,
    }
    return dataclasses.field(default=default, metadata=meta)


def option(name: str) -> str:
    """The flag of a field: `latent_dim` → `--latent-dim`."""
    return "--" + name.replace("_", "-")


@functools.cache
def field_hints(kind: type) -> dict[str, Any]:
    """The resolved annotation of each field of the dataclass `kind` (cached: resolving is slow)."""
    return typing.get_type_hints(kind)


def choices_of(hint: Any) -> tuple[Any, ...] | None:
    """The allowed values of a `Literal[...]` annotation (optional or not); None for other types."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is typing.Literal:
        return typing.get_args(hint)
    if len(args) == 1 and typing.get_origin(args[0]) is typing.Literal:
        return typing.get_args(args[0])
    return None


def wanted(hint: Any, value: Any = None) -> str:
    """What a value of type `hint` is, for an error line: "an integer", "one of a, b", "a number or null"
    ("a string (one of a, b)" when `value` is not even a string)."""
    allowed = choices_of(hint)
    optional = type(None) in typing.get_args(hint)
    base = next((a for a in typing.get_args(hint) if a is not type(None)), hint) if optional else hint
    if allowed is not None and value is not None and not isinstance(value, str):
        text = f"a string (one of {', '.join(map(str, allowed))})"
    elif allowed is not None:
        text = f"one of {', '.join(map(str, allowed))}"
    elif typing.get_origin(base) is tuple:
        text = "a list of strings"
    else:
        names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
        text = names.get(base, f"a {getattr(base, '__name__', base)}")
    return text + (" or null" if optional else "")


def shown(value: Any) -> str:
    """A value for an error line: its repr, cut short (a config file's value may be a long list)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def is_a(value: Any, hint: Any) -> bool:
    """Whether an already-built value has the annotated type, as it is: nothing is converted here (bool
    is not an int, an int is a fine float; a Literal's value must be one of its choices)."""
    args, origin = typing.get_args(hint), typing.get_origin(hint)
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return any(is_a(value, a) for a in args)
    if origin is tuple:
        return isinstance(value, tuple) and all(is_a(v, args[0]) for v in value)
    if hint is type(None) or hint is bool:
        return value is None if hint is type(None) else isinstance(value, bool)
    if isinstance(value, bool):
        return False
    return isinstance(value, (int, float)) if hint is float else isinstance(value, hint)


def check_fields(obj: Any) -> None:
    """Refuse a value of the wrong type, above its field's `max` or not finite, in the flags' one-line
    style ("--ngf must be an integer, got '64'"), before anything is built from it."""
    kind: Any = type(obj)
    hints = field_hints(kind)
    values = {
        f.name: getattr(obj, f.name)
        for f in dataclasses.fields(obj)
        if not dataclasses.is_dataclass(hints[f.name])
    }
    bad = next((n for n, v in values.items() if not is_a(v, hints[n])), None)
    if bad is not None:
        raise FaceganError(
            f"{option(bad)} must be {wanted(hints[bad], values[bad])}, got {shown(values[bad])}"
        )
    for f in dataclasses.fields(obj):
        value, top = values.get(f.name), f.metadata.get("max")
        if isinstance(value, float) and not math.isfinite(value):
            # NaN compares false with every bound, so it would pass them all (an infinite EMA half-life
            # would freeze the averaged G at its initialisation).
            raise FaceganError(f"{option(f.name)} must be a finite number, got {value}")
        if top is not None and value is not None and value > top:
            raise FaceganError(f"{option(f.name)} must be at most {top}, got {value}")


# ----------------------------------------------------------------------------- jsonargparse's errors


def check_bools(parser: Any, ns: Any, where: str) -> None:
    """On/off flags take no type from jsonargparse: a file's value for one must be true or false."""
    for action in parser._actions:
        value = ns.get(action.dest, False) if action.nargs == 0 and action.dest != "help" else False
        if not isinstance(value, bool):
            raise FaceganError(f"{where}: {action.dest} must be true or false, got {shown(value)}")


def bad_value(parser: Any, message: str) -> tuple[str, Any, str] | None:
    """(key, its type, the value as given) of jsonargparse's message about a bad value, else None."""
    import re

    first = " ".join(message.split())
    m = re.match(r'Parser key "([^"]+)":', first)
    if not m:
        return None
    action = next((a for a in parser._actions if a.dest == m.group(1)), None)
    got = re.search(r"(?:Given|Got) value: (.*?)(?:$| Given value type)", first)
    return m.group(1), getattr(action, "_typehint", None), got.group(1) if got else "?"


def explain(parser: Any, message: str) -> str:
    """jsonargparse's (multi-line) message about a value or key as one line: "model.size must be an
    integer, got 'big'" or "unknown key 'model.sise' (model has: size, ...)"."""
    import re

    first = " ".join(message.split())
    unknown = re.search(r"[Oo]ption '([^']+)'", first)
    if unknown and ("not accepted" in first or "does not accept" in first):
        return _unknown_key(parser, unknown.group(1))
    bad = bad_value(parser, message)
    if bad is None:
        return first
    key, hint, value = bad
    return f"{key} must be {wanted(hint) if hint is not None else 'valid'}, got {shown(value)}"


def _unknown_key(parser: Any, key: str) -> str:
    dests = [a.dest for a in parser._actions if a.dest not in ("help", "config", "print_config")]
    parts = key.split(".")
    for n in range(1, len(parts)):
        prefix = ".".join(parts[:n])
        if not any(d.startswith(prefix + ".") for d in dests):
            return f"unknown key {prefix!r}"
    group = ".".join(parts[:-1])
    known = [d[len(group) + 1 :] for d in dests if group and d.startswith(group + ".")]
    return f"unknown key {key!r}" + (f" ({group} has: {', '.join(known)})" if known else "")


def flag_name(parser: Any, dest: str) -> str:
    """The flag of a setting (`model.size` → `--size`), or its name for a positional."""
    action = next(a for a in parser._actions if a.dest == dest)
    return action.option_strings[0] if action.option_strings else dest
