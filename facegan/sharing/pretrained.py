"""Generators that ship inside the package, so `facegan generate --pretrained celeba64` works offline.

Each name has `<name>.safetensors` (EMA generator weights + config in the metadata), `<name>.md`
(its model card: data, licence, preset, steps, wall time, device, measured quality, the exact
command that produced it), `<name>.display.yaml` (its display default: the variety, i.e. truncation,
the page and the HTTP API show it at, measured by bench/display_truncation.py) and optionally
`<name>.edits.safetensors` (its attribute edits, facegan.edits), `<name>.edits.yaml` (how its
unsupervised directions were named) and `<name>.training.yaml` (the data it trained on, so `facegan
evaluate` can say whether the held-out faces were unseen: facegan.sampling.provenance) in
facegan/pretrained_models/.

The display default sits beside the weights rather than in their metadata so that re-measuring it (or
shipping retrained weights) changes one line of text, not a 4 MB binary; `load_generator` reads it for
these files only (any other export keeps its own in its metadata), and an export of a shipped model
writes it into the exported file's metadata.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

from facegan.errors import FaceganError
from facegan.sampling.display import DISPLAY_SUFFIX, display_file  # noqa: F401  (re-exported)

PACKAGE = "facegan.pretrained_models"


# `facegan serve` without a model list serves every shipped model, and its first is the one the page opens on
# and a request without `model=` draws. The seeds' main job is human faces ("this face does not exist"),
# so celeba64 leads and the rest follow by name.
LEAD = "celeba64"


def serve_order() -> list[str]:
    """The shipped names in the order `facegan serve` lists them: LEAD first, then by name."""
    return sorted(available(), key=lambda name: (name != LEAD, name))


def available() -> list[str]:
    """Names of the generators shipped with this install."""
    root = resources.files(PACKAGE)
    # `<name>.edits.safetensors` beside a generator holds its edit directions, not a generator.
    return sorted(
        p.name.removesuffix(".safetensors")
        for p in root.iterdir()
        if p.name.endswith(".safetensors") and not p.name.endswith(".edits.safetensors")
    )


def path(name: str) -> Path:
    """Filesystem path of a shipped generator's weights."""
    names = available()
    if name not in names:
        shipped = ", ".join(names) or "none in this install"
        raise FaceganError(f"unknown pretrained generator {name!r}; shipped: {shipped}")
    return Path(str(resources.files(PACKAGE) / f"{name}.safetensors"))


def model_card(name: str) -> str:
    """The model card (markdown) of a shipped generator."""
    return path(name).with_suffix(".md").read_text()


def weights_sha256(name: str) -> str:
    """sha256 of a shipped generator's weights file: its display file names the weights it was
    measured on, so new weights under an old name are caught (tests/sharing/test_pretrained.py)."""
    return hashlib.sha256(path(name).read_bytes()).hexdigest()
