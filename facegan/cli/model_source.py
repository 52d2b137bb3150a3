"""The generator a command reads: `--pretrained NAME` (one shipped with facegan) or `--checkpoint PATH`."""

from __future__ import annotations

import argparse


def model_path(args: argparse.Namespace) -> str:
    """The file that `--pretrained` or `--checkpoint` names."""
    if args.pretrained:
        from facegan.sharing import pretrained

        return str(pretrained.path(args.pretrained))
    return str(args.checkpoint)
