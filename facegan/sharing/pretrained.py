"""Generators that ship inside the package, so `facegan generate --pretrained celeba64` works offline.

Each name has `<name>.safetensors` (EMA generator weights + config in the metadata), `<name>.md`
(its model card: data, licence, preset, steps, wall time, device, measured quality, the exact
command that produced it) and optionally `<name>.edits.safetensors` (its attribute edits, facegan.edits) and
`<name>.edits.yaml` (how its unsupervised directions were named) in facegan/pretrained_models/.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from facegan.errors import FaceganError

PACKAGE = "facegan.pretrained_models"


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
