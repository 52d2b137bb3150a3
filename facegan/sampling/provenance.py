"""What a generator file says about the data it trained on: the prepared dataset's content hash and
whether its held-out faces were among the training images (`--train-on-heldout`).

A training checkpoint holds the hash and its config; an export holds both as text in its metadata; a
shipped generator has `<name>.training.yaml` beside its weights. `load_generator` keeps what it found on
the module, and `export_generator` writes it into any export of that module, so a copy of a shipped
model or of a run's checkpoint still says what it trained on (facegan.metrics.provenance reads it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from facegan.errors import FaceganError
from facegan.sampling.display import shipped_sidecar
from facegan.storage.untrusted import parse_yaml

TRAINING_SUFFIX = ".training.yaml"  # beside a shipped generator's weights
HASH_KEY, HELDOUT_KEY = "dataset_hash", "train_on_heldout"  # export metadata and the shipped file


def _text(value: object) -> str | None:
    """A stored hash or yes/no as export-metadata text ("true"/"false" for a YAML bool); None if absent."""
    if value is None or value == "":
        return None
    return str(value).lower() if isinstance(value, bool) else str(value)


def training_record(raw: dict[str, Any]) -> dict[str, str]:
    """The hash and held-out flag of `raw` (export metadata, or a shipped training file), as the text
    entries an export's metadata stores; keys that are absent stay absent."""
    found = {key: _text(raw.get(key)) for key in (HASH_KEY, HELDOUT_KEY)}
    return {key: value for key, value in found.items() if value is not None}


def shipped_training_record(weights: str | Path) -> dict[str, str] | None:
    """A shipped generator's `<name>.training.yaml` as training_record entries; None for any other file."""
    side = shipped_sidecar(weights, TRAINING_SUFFIX)
    if side is None:
        return None
    raw = parse_yaml(side.read_text(), repr(str(side)))
    if not isinstance(raw, dict):
        raise FaceganError(f"{str(side)!r} must map dataset_hash and train_on_heldout to values")
    return training_record(raw)
