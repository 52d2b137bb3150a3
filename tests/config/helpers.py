"""Helpers for the config tests: run the CLI in-process and read its one-line error."""

from __future__ import annotations

import pytest

from facegan.cli.main import main


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
