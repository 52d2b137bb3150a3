"""Command line: `facegan prepare|train|generate|export|evaluate|plot|serve|directions|evaluate-edits`
(also `python -m facegan`).

Each verb lives in its own module (facegan/cli/*.py) as a `Verb`: a jsonargparse parser, with
`--config FILE` and `--print-config` (facegan/cli/flags.py), and the function that runs it. This module
only picks the verb and turns every mistake into one line and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from facegan.errors import FaceganError

# verb → (module, factory of its Verb, one-line help for `facegan --help`)
VERBS = {
    "prepare": ("facegan.cli.prepare", "prepare_verb", "pack images into a training-ready dataset"),
    "train": ("facegan.cli.train", "train_verb", "train a GAN"),
    "generate": (
        "facegan.cli.generate",
        "generate_verb",
        "generate faces from a checkpoint or exported generator",
    ),
    "export": (
        "facegan.cli.generate",
        "export_verb",
        "export the generator alone: .safetensors, a Hugging Face Hub folder, or ONNX",
    ),
    "evaluate": (
        "facegan.cli.evaluate",
        "evaluate_verb",
        "measure a generator: FID/KID (Inception) or C2ST (no download)",
    ),
    "plot": ("facegan.cli.prepare", "plot_verb", "rebuild a run's curves and animation from stats.jsonl"),
    "serve": ("facegan.cli.serve", "serve_verb", "serve a 'this face does not exist' page and PNG/GIF API"),
    "directions": ("facegan.cli.edits", "directions_verb", "find attribute edit directions of a generator"),
    "evaluate-edits": (
        "facegan.cli.edits",
        "evaluate_edits_verb",
        "measure a generator's edits with a held-out classifier",
    ),
}


class _Root(argparse.ArgumentParser):
    """`facegan` itself: lists the verbs; a mistake is one line and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)


def verb(name: str) -> Any:
    """The `Verb` of `facegan NAME` (its parser built now)."""
    module, factory, _ = VERBS[name]
    return getattr(importlib.import_module(module), factory)()


class _Commands:
    """What `build_parser()` returns: `parse_args(["train", ...])` resolves a verb's settings as `main`
    does (files, presets, flags); anything else goes to the root parser (--help, --version, errors)."""

    def __init__(self) -> None:
        from facegan.version import __version__

        self.root = _Root(prog="facegan", description="Train, evaluate, share and serve face GANs.")
        self.root.add_argument("--version", action="version", version=f"facegan {__version__}")
        sub = self.root.add_subparsers(dest="command", required=True, metavar="{" + ",".join(VERBS) + "}")
        for name, (_, _, help_text) in VERBS.items():
            sub.add_parser(name, help=help_text, add_help=False)

    def parse_args(self, argv: list[str]) -> Any:
        from facegan.cli.flags import resolve

        if argv and argv[0] in VERBS:
            ns, _ = resolve(verb(argv[0]), argv[1:])
            return ns
        return self.root.parse_args(argv)


def build_parser() -> _Commands:
    return _Commands()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `facegan` console script."""
    from facegan.cli.flags import UsageError, run

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in VERBS:
        _Commands().root.parse_args(argv)  # --help, --version, or one line and exit 2
        return 2
    name = argv[0]
    try:
        return int(run(verb(name), argv[1:]))
    except UsageError as err:
        sys.stderr.write(f"{err.prog}: error: {err} (see {err.prog} --help)\n")
        return 2
    except FaceganError as err:
        sys.stderr.write(f"facegan {name}: error: {err}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"facegan {name}: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
