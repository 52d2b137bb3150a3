"""Edited faces and sweep grids of a generator with `Directions`."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.utils import save_image

from facegan.errors import FaceganError
from facegan.runtime.perf import model_config
from facegan.sampling.directions import Directions
from facegan.sampling.generate import decode, latents, writing

MAX_COLUMNS = 21


def edit_faces(
    g: nn.Module,
    directions: Directions | None,
    seeds: list[int],
    edits: dict[str, float] | None,
    truncation: float | None = None,
    batch_size: int = 256,
) -> torch.Tensor:
    """Faces (N, 3, S, S) in [-1, 1] of `seeds` with `edits` applied to their latents (after truncation,
    so an edit moves the seed's own z). No edits, or all amounts 0: exactly
    `facegan.sampling.generate.faces`."""
    z = latents(seeds, model_config(g).latent_dim, truncation)
    if edits:
        if directions is None:
            raise FaceganError("this model has no edit directions; find some with `facegan directions`")
        z = directions.apply(z, edits)
    return decode(g, z, batch_size)


def amounts(columns: int) -> list[float]:
    """`columns` amounts evenly from -1 to 1 (0 included when odd)."""
    if not 2 <= columns <= MAX_COLUMNS:
        raise FaceganError(f"a sweep has 2 to {MAX_COLUMNS} columns, got {columns}")
    return [round(-1 + 2 * i / (columns - 1), 6) for i in range(columns)]


def sweep(
    g: nn.Module,
    directions: Directions,
    seeds: list[int],
    name: str,
    columns: int = 7,
    truncation: float | None = None,
) -> torch.Tensor:
    """Faces for a sweep grid of edit `name`: row i is seed i, columns the amounts -1 … 1."""
    directions.check({name: 0.0})
    z = latents(seeds, model_config(g).latent_dim, truncation)
    rows = [directions.apply(z, {name: a}) for a in amounts(columns)]
    grid = torch.stack(rows, 1).flatten(0, 1)  # seed-major: (seed, amount)
    return decode(g, grid)


def write_grid(images: torch.Tensor, columns: int, out: str | Path) -> Path:
    out = Path(out)
    with writing(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        save_image(images, out, nrow=columns, padding=2, normalize=True, value_range=(-1.0, 1.0))
    return out
