"""Rank agreement at the start of a run: every rank must train the same config on the same data from the
same state, or the run stops with one line before anything is written.

Rank 0 resolves the config and reads any checkpoint and broadcasts them, so the ranks agree by
construction in the common case; this check catches what construction cannot: a rank whose device
resolved a speed setting otherwise (bf16 on one machine, fp32 on another), another dataset under the
same path, or initial weights built differently (another torch version's initialisation). Each rank
digests what it holds (the config field by field, the dataset's content hash, every tensor of G, D,
the EMA G, both optimizers, the scaler and the step generator's state), rank 0 gathers the digests
and names the first difference; the digests are a few bytes per tensor, so no weights cross ranks.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import torch

from facegan.errors import FaceganError
from facegan.training.build import Training
from facegan.training.distributed import Dist

Digests = dict[str, str]


def digest_tensor(t: torch.Tensor) -> str:
    """A short digest of a tensor's dtype, shape and values (independent of its memory layout)."""
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    h = hashlib.blake2b(f"{t.dtype}{tuple(t.shape)}".encode(), digest_size=12)
    h.update(flat.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _leaves(obj: Any, path: str) -> Iterator[tuple[str, Any]]:
    """(path, leaf) of nested dicts/lists of tensors and plain values (a state dict)."""
    if isinstance(obj, dict):
        for key in sorted(obj, key=str):
            yield from _leaves(obj[key], f"{path}.{key}")
    elif isinstance(obj, (list, tuple)):
        for i, item in enumerate(obj):
            yield from _leaves(item, f"{path}[{i}]")
    else:
        yield path, obj


def fingerprint(training: Training, dataset_hash: str | None) -> dict[str, Digests]:
    """What this rank starts from, by part: {"config": {field: value}, "G": {tensor: digest}, ...}."""
    parts: dict[str, Digests] = {
        "config": {k: json.dumps(v, sort_keys=True) for k, v in _leaves(training.cfg.to_dict(), "")},
        "dataset": {"content hash": str(dataset_hash)},
    }
    states: list[tuple[str, Any]] = [
        ("G weights", training.g.state_dict()),
        ("D weights", training.d.state_dict()),
        ("EMA G weights", training.ema.state_dict() if training.ema is not None else {}),
        ("G optimizer state", training.opt_g.state_dict()),
        ("D optimizer state", training.opt_d.state_dict()),
        ("loss scaler state", training.scaler.state_dict() if training.scaler is not None else {}),
        ("step noise generator", {"state": training.step_rng.get_state()}),
    ]
    for name, state in states:
        parts[name] = {
            key: digest_tensor(v) if isinstance(v, torch.Tensor) else repr(v) for key, v in _leaves(state, "")
        }
    return parts


def first_difference(mine: dict[str, Digests], theirs: dict[str, Digests]) -> tuple[str, str] | None:
    """(part, key) of the first entry where two fingerprints differ, or None."""
    for part in {**mine, **theirs}:
        a, b = mine.get(part, {}), theirs.get(part, {})
        for key in {**a, **b}:
            if a.get(key) != b.get(key):
                return part, key
    return None


def check_ranks_agree(dist: Dist, training: Training, dataset_hash: str | None) -> None:
    """Raise one FaceganError line on every rank (rank 0 says it) unless all ranks hold the same
    resolved config, dataset and initial state (fresh or resumed) as rank 0."""
    everyone = dist.gather(fingerprint(training, dataset_hash))

    def verdict() -> None:
        assert everyone is not None
        reference = everyone[0]
        for rank, theirs in enumerate(everyone[1:], start=1):
            found = first_difference(reference, theirs)
            if found is None:
                continue
            part, key = found
            if part == "config":
                what = (
                    f"resolved config differs from rank 0's at {key.lstrip('.')} ("
                    f"{theirs[part].get(key, 'absent')} on rank {rank}, "
                    f"{reference[part].get(key, 'absent')} on rank 0)"
                )
            elif part == "dataset":
                what = "dataset (its content hash) differs from rank 0's"
            else:
                what = f"initial {part} differ from rank 0's (first at {key.lstrip('.') or 'its value'})"
            raise FaceganError(
                f"rank {rank}'s {what}: every rank must start the same run; check that all ranks run the "
                f"same facegan and torch versions on the same kind of device with the same data"
            )

    dist.share(verdict)
