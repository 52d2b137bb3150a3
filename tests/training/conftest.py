"""Fixtures of the training tests: a small prepared dataset, once per module."""

from __future__ import annotations

from pathlib import Path

import pytest

from facegan.data.prepare import prepare


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 synthetic 32px faces, prepared once for the module."""
    return prepare(
        "synthetic", tmp_path_factory.mktemp("data") / "faces", size=32, synthetic_count=64, quiet=True
    ).out
