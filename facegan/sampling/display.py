"""A model's display default: the truncation ("variety") the page and the HTTP API draw its faces at when
a request names none, measured per model (bench/display_truncation.py) and stored with it.

An export keeps it in its metadata (`display_truncation`); a shipped generator keeps it beside its weights
in `<name>.display.yaml`, so re-measuring it changes one line of text rather than the 4 MB weights file.
Only the shipped folder's files are read that way: a copy elsewhere carries what its own metadata says.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

from facegan.errors import FaceganError
from facegan.storage.untrusted import parse_yaml

# Below this bound nearly every latent component would be redrawn, again and again (|z| < 0.01 has odds
# 1 in 125 per draw): slow for no visible gain, and a value like 1e-9 would never finish.
MIN_TRUNCATION = 0.2
# The largest truncation the HTTP API takes, and so the largest display default a model may store: a
# 100-d N(0, 1) latent has a component beyond ±4 in under 1% of draws, so above it t changes nothing.
MAX_TRUNCATION = 4.0
DISPLAY_SUFFIX = ".display.yaml"
SHIPPED_PACKAGE = "facegan.pretrained_models"  # the data package of the shipped generators


def display_value(value: object, where: str) -> float | None:
    """A stored display truncation as a number (None, absent or "full": the full distribution); one
    error line naming `where` unless it is a number from MIN_TRUNCATION to MAX_TRUNCATION."""
    if value is None or value == "full":
        return None
    try:
        t = float(value) if isinstance(value, (int, float, str)) and not isinstance(value, bool) else math.nan
    except ValueError:
        t = math.nan
    if not (math.isfinite(t) and MIN_TRUNCATION <= t <= MAX_TRUNCATION):
        raise FaceganError(
            f"{where} must be a truncation from {MIN_TRUNCATION} to {MAX_TRUNCATION} (or absent for the "
            f"full distribution), got {str(value)[:40]!r}"
        )
    return t


def shipped_sidecar(weights: str | Path, suffix: str) -> Path | None:
    """The file `<name><suffix>` beside a shipped generator's weights file `weights`, or None when
    `weights` is not a shipped generator's (a copy elsewhere says what its own metadata says) or the
    shipped folder has no such file."""
    weights = Path(weights)
    if weights.suffix != ".safetensors" or weights.name.endswith(".edits.safetensors"):
        return None
    folder = Path(str(resources.files(SHIPPED_PACKAGE)))
    try:
        shipped = weights.resolve().parent == folder.resolve()
    except OSError:
        return None
    side = folder / (weights.stem + suffix)
    return side if shipped and side.is_file() else None


def display_file(weights: str | Path) -> Path | None:
    """The display-default file of a shipped generator's weights file, or None for any other file."""
    return shipped_sidecar(weights, DISPLAY_SUFFIX)


def read_display(path: Path) -> object:
    """The `truncation` of a display-default file: a number, or "full" (`display_value` checks it)."""
    raw = parse_yaml(path.read_text(), repr(str(path)))
    if not isinstance(raw, dict) or "truncation" not in raw:
        raise FaceganError(f"{str(path)!r} names no truncation (write e.g. `truncation: 2.0` or `full`)")
    return raw["truncation"]
