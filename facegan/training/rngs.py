"""The random number generators a training run owns; the process's global ones are never touched.

A run draws every random number from generators it made itself, never from `torch`'s, `random`'s or
numpy's global state, so training inside a larger program (a notebook, a sweep, the tests) neither
depends on nor disturbs what that program seeded, and a checkpoint holds everything a resume needs:

* `step`: the training step's noise (z, DiffAugment, penalty interpolation), on the training device.
  Seeded from the run seed alone, so it is the same on every rank: each rank draws the numbers of the
  whole global batch and keeps its own rows (facegan.training.distributed), whatever the number of ranks.
* `host`, `python`, `numpy`: this rank's host-side generators, seeded from the run seed and the rank
  (rank 0's from the seed itself, as one process's). Nothing in the loop draws from them today; any
  host-side randomness added to training must, so it is checkpointed and resumes exactly.

A checkpoint's "rng" entry keeps the layout earlier versions wrote for the global states (python,
numpy, torch, cuda, step), which those versions and `facegan.networks.ckpt_fields` check; "cuda" is now empty,
as the step generator already is the CUDA stream when training runs on a GPU.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class RunRngs:
    step: torch.Generator
    host: torch.Generator
    python: random.Random
    numpy: np.random.RandomState

    @classmethod
    def seeded(cls, step: torch.Generator, seed: int, rank: int = 0) -> RunRngs:
        """The run's generators around `step` (seeded by facegan.training.build): rank `rank`'s host ones
        seeded with `seed + rank`."""
        mine = seed + rank
        return cls(
            step,
            torch.Generator().manual_seed(mine),
            random.Random(mine),
            np.random.RandomState(mine % 2**32),
        )

    def capture(self) -> dict[str, Any]:
        """The generators' states, in the checkpoint's "rng" layout (tensors and plain data only)."""
        numpy_state = self.numpy.get_state(legacy=True)
        assert isinstance(numpy_state, tuple)
        kind, keys, pos, has_gauss, cached = numpy_state
        return {
            "python": self.python.getstate(),
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
            "torch": self.host.get_state(),
            "cuda": [],
            "step": self.step.get_state(),
        }

    def restore(self, state: dict[str, Any]) -> bool:
        """Inverse of `capture` (also of the global states older checkpoints recorded). Returns whether
        the step generator continues its exact stream: False when the checkpoint was written on another
        kind of device (a CPU generator's state cannot drive a CUDA one, nor the reverse); it is then
        reseeded from the saved state, so the resumed run is reproducible but draws other noise."""
        self.python.setstate(_tuples(state["python"]))
        kind, keys, pos, has_gauss, cached = state["numpy"]
        self.numpy.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        self.host.set_state(state["torch"])
        try:
            self.step.set_state(state["step"])
            return True
        except RuntimeError:  # the state of a generator on another device type (its size/layout differ)
            digest = hashlib.sha256(state["step"].numpy().tobytes()).digest()
            self.step.manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
            return False


def _tuples(obj: Any) -> Any:
    # Random.setstate insists on tuples; serialisers may hand back lists.
    return tuple(_tuples(o) for o in obj) if isinstance(obj, (list, tuple)) else obj
