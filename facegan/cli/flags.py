"""What every `facegan` verb shares: a jsonargparse parser whose mistakes are one line and exit 2,
`--config FILE` and `--print-config`, and the layering defaults < preset < files < flags.

Each verb's settings are the arguments of its parser: a flag and, under the flag's name without the
dashes (`--min-side` → `min_side`, `--latent-dim` → `model.latent_dim`), a key of a YAML config file.
`--print-config` prints the settings a command line resolves to, as such a file; `--config FILE` reads
one back, and flags given with it win, wherever they stand. The library and its alternatives are
compared in docs/config.md.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jsonargparse import Namespace

from facegan.config.check import flag_name
from facegan.config.parser import Parser, UsageError
from facegan.errors import FaceganError

__all__ = ["Parser", "UsageError", "Verb", "resolve", "run", "verb_parser"]

META = ("config", "print_config", "help")  # arguments that are not settings


@dataclass
class Verb:
    """One `facegan` subcommand: its parser, what runs it, and how its settings are printed."""

    name: str
    parser: Parser
    run: Callable[[Namespace], int]
    required: tuple[str, ...] = ()  # settings that must be given, by flag or file
    presets: bool = False  # `train`: a --preset (or a file's preset:) lies under the files
    printed: Callable[[Namespace], str] | None = None  # default: the settings as parsed


def verb_parser(name: str, **kwargs: Any) -> Parser:
    """The parser of `facegan NAME`, with --config and --print-config."""
    p = Parser(prog=f"facegan {name}", **kwargs)
    p.add_argument(
        "--config",
        metavar="FILE.yaml",
        action="append",
        type=str,
        help="a YAML config file of this command's settings (the layout --print-config prints; partial "
        "files are fine; repeat for several, later ones win): flags override it, wherever they stand",
    )
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved settings as YAML (ready for --config) and exit without running",
    )
    return p


def resolve(verb: Verb, argv: list[str], defaults: bool = True) -> tuple[Namespace, Namespace]:
    """(settings, the flags alone) of `facegan VERB argv`: defaults < preset < --config files < flags.

    With defaults False, the settings are only what the files and flags give (a resumed run compares
    them with its checkpoint)."""
    from facegan.config.files import parse_file, preset_sections, read_config_yaml

    parser = verb.parser
    flags = parser.parse_args(argv, namespace=Namespace(), defaults=False)
    files = [(path, read_config_yaml(path)) for path in flags.get("config") or []]
    ns = parser.get_defaults() if defaults else Namespace()
    if verb.presets:
        named = [raw["preset"] for _, raw in files if "preset" in raw]
        name = flags.get("preset") or (named[-1] if named else None)
        if name is not None and not isinstance(name, str):
            raise FaceganError(f"preset must be a preset name, got {name!r}")
        if name is not None and defaults:
            ns = parse_file(parser, preset_sections(name), f"preset {name}", ns)
    for path, raw in files:
        ns = parse_file(parser, raw, str(path), ns)
    before = ns.clone()
    ns = parser.parse_args(argv, namespace=ns, defaults=defaults)
    for action in parser._actions:  # an optional positional (prepare's source) not typed: the file's
        if (
            not action.option_strings
            and flags.get(action.dest) is None
            and before.get(action.dest) is not None
        ):
            ns[action.dest] = before[action.dest]
    if defaults:
        missing = [flag_name(parser, key) for key in verb.required if ns.get(key) is None]
        if missing and not ns.get("print_config"):
            raise UsageError(parser.prog, f"the following arguments are required: {', '.join(missing)}")
    return ns, flags


def settings_yaml(verb: Verb, ns: Namespace) -> str:
    """`--print-config`'s text: the verb's settings, without --config and --print-config themselves."""
    if verb.printed is not None:
        return verb.printed(ns)
    clean = ns.clone()
    for key in META:
        if key in clean:
            del clean[key]
    header = f"# facegan {verb.name} config; edit and run: facegan {verb.name} --config FILE.yaml\n"
    return header + str(verb.parser.dump(clean, skip_unset=False))


def run(verb: Verb, argv: list[str]) -> int:
    """Resolve `facegan VERB argv`, print its config or run it."""
    ns, flags = resolve(verb, argv)
    ns.argv = [verb.name, *argv]  # the command line, e.g. for `train --nproc-per-node` to pass on
    ns.flags = flags
    if ns.get("print_config") and verb.printed is None:
        sys.stdout.write(settings_yaml(verb, _settings(ns)))
        return 0
    return verb.run(ns)


def _settings(ns: Namespace) -> Namespace:
    clean = ns.clone()
    for key in ("argv", "flags"):
        del clean[key]
    return clean


def one_of(ns: Namespace, *names: str) -> str:
    """The one of the settings `names` (e.g. checkpoint, pretrained) that is given, in argparse's words
    when none or several are."""
    given = [n for n in names if ns.get(n) not in (None, "")]
    flags = " ".join("--" + n for n in names)
    if len(given) > 1:
        raise FaceganError(f"argument --{given[1]}: not allowed with argument --{given[0]}")
    if not given and not any(ns.get(n) == "" for n in names):
        raise FaceganError(f"one of the arguments {flags} is required")
    return given[0] if given else next(n for n in names if ns.get(n) == "")


def dataclass_arguments(parser: Any, kind: type) -> None:
    """One flag (and config key) per field of the dataclass `kind` (e.g. ServeConfig), in field order;
    a field that is itself a dataclass (ServeConfig.limits) is left to its own call."""
    import dataclasses

    from facegan.config.files import field_argument

    for f in dataclasses.fields(kind):
        if f.metadata.get("flag", True):
            names, kwargs = field_argument(kind, f, f.name)
            parser.add_argument(*names, **kwargs)


def given_fields(args: Namespace, kind: type) -> dict[str, Any]:
    """`{field: value}` of the settings of the dataclass `kind` in `args`, ready for `kind(**...)`."""
    import dataclasses

    from facegan.config.files import converted

    names = [f.name for f in dataclasses.fields(kind) if f.metadata.get("flag", True) and f.name in args]
    return converted(kind, {n: args[n] for n in names})
