"""`Parser`: the jsonargparse parser every verb, preset and config file is read with, whose mistakes are
one line (`UsageError`) instead of a usage block and a multi-line error."""

from __future__ import annotations

import argparse
import typing
from typing import Any, NoReturn

from jsonargparse import ArgumentParser

from facegan.config.check import bad_value, explain, flag_name, wanted


class UsageError(Exception):
    """A mistake on the command line, already one line (the parser's prog is in `prog`)."""

    def __init__(self, prog: str, message: str, raw: str = "") -> None:
        super().__init__(message)
        self.prog = prog
        self.raw = raw or message  # jsonargparse's own words, for a file's error (config.files.parse_file)


class Parser(ArgumentParser):
    """jsonargparse, whose mistakes are raised as one UsageError line instead of usage + error."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("print_config", None)  # facegan's own --print-config, after the checks
        kwargs.setdefault("env_prefix", False)
        kwargs.setdefault("formatter_class", argparse.HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:

        bad = bad_value(self, message)
        flag = next((flag_name(self, a.dest) for a in self._actions if bad and a.dest == bad[0]), None)
        if bad is None or flag is None:
            raise UsageError(self.prog, explain(self, message), message)
        _, hint, value = bad
        base = next((t for t in typing.get_args(hint) if t is not type(None)), hint)
        if base in (int, float):  # argparse's own words for a number that is not one
            raise UsageError(self.prog, f"argument {flag}: invalid {base.__name__} value: {value!r}", message)
        raise UsageError(self.prog, f"argument {flag}: must be {wanted(hint)}, got {value!r}", message)
