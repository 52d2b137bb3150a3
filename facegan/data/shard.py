"""One rank's rows of a global batch, and every rule a batch size obeys (each decided here, once: the
verbs, the batch source, the dry run and the metrics call these).

`--batch-size` is the global batch B; with N ranks (facegan.training.distributed), rank r trains rows
[r·B/N, (r+1)·B/N) of each step's batch, and every random draw is made for all B rows on every rank,
each keeping its own rows (`Shard.take`), so a step is that of a one-process run whatever N is.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from facegan.errors import FaceganError


class Shard(NamedTuple):
    """This rank's rows [start, start + size) of a global batch of `total` rows."""

    start: int
    size: int
    total: int

    @classmethod
    def of(cls, rank: int, world: int, total: int) -> Shard:
        """Rank `rank`'s rows of a global batch of `total` split evenly over `world` ranks: the one place
        the rows are worked out (the batch source and the step both take them from here)."""
        check_batch(total, world)
        per = total // world
        return cls(rank * per, per, total)

    @property
    def rows(self) -> slice:
        return slice(self.start, self.start + self.size)

    def take(self, drawn: torch.Tensor) -> torch.Tensor:
        """This rank's rows of a tensor drawn for the whole global batch (dimension 0)."""
        return drawn[self.start : self.start + self.size]


def check_batch(batch_size: int, world: int) -> None:
    """One line when the global batch cannot be split evenly over the ranks."""
    if batch_size % world:
        lower = batch_size // world * world
        raise FaceganError(
            f"--batch-size {batch_size} is the global batch and must split evenly over the "
            f"{world} ranks; use --batch-size {lower or world} or {lower + world}, or "
            f"another number of processes"
        )


def check_batch_size(batch_size: int) -> int:
    """One line unless `batch_size` >= 1 (every verb's --batch-size)."""
    if batch_size < 1:
        raise FaceganError(f"--batch-size must be >= 1, got {batch_size}")
    return batch_size


def check_batch_fits(batch_size: int, trained: int, heldout: int) -> None:
    """One line when a training batch is larger than the images training draws from (`trained`, after
    `heldout` images were kept back for metrics), with the largest power of two that fits."""
    check_batch_size(batch_size)
    if batch_size > trained:
        held = f" after holding out {heldout} for metrics" if heldout else ""
        fits = 1 << (max(trained, 1).bit_length() - 1)
        raise FaceganError(
            f"--batch-size {batch_size} is larger than the dataset ({trained} images{held}); "
            f"use --batch-size {fits} or add more images"
        )
