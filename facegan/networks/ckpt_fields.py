"""Every field of a loaded training checkpoint, checked before anything uses it.

A checkpoint may come from someone else, and a bad field that passes loading fails much later: a step of
-5 trains from a negative step and names its files after it, a NaN learning-rate scale poisons the
optimizers at the first step, a short RNG list fails mid-resume. Each field is checked for its type and
range here, and the file's size against what its config implies; the weights' shapes are checked
against the config on the meta device by `checkpoint.check_state`. Fields a checkpoint may lack (those
written before a field existed) are checked only when present.
"""

from __future__ import annotations

import math
from typing import Any, NoReturn

import torch

from facegan.errors import FaceganError
from facegan.storage.sizes import MAX_PARAMS, estimate_params

# Bytes a checkpoint holds per parameter: G, D and G_ema as float32, and Adam's two moments of each of
# G and D, at most 4·(4·G + 3·D). RECORD_SLACK covers the pickled config, RNG states and scaler.
RECORD_SLACK = 16 * 2**20
RANK_SLACK = 64 * 2**10  # one rank's RNG states (torch's and numpy's are 5 KB each)
MAX_CHECKPOINT_BYTES = 4 * 4 * MAX_PARAMS + RECORD_SLACK  # the largest model facegan builds

COUNTERS = ("step", "epoch", "epoch_position", "images_seen")
KNOWN = {
    "format",
    "version",
    "facegan_version",
    "config_schema",
    "config",
    *COUNTERS,
    "dataset_hash",
    "G",
    "D",
    "G_ema",
    "opt_g",
    "opt_d",
    "rng",
    "rng_ranks",
    "world_size",
    "scaler",
    "best",
    "guard",
}


def implied_bytes(cfg: Any, ranks: int = 1) -> int:
    """The most bytes a checkpoint of ModelConfig `cfg` written by `ranks` processes can hold."""
    n_g, n_d = estimate_params(cfg.size, cfg.latent_dim, cfg.ngf, cfg.ndf, cfg.channels)
    return 4 * (4 * n_g + 3 * n_d) + RECORD_SLACK + RANK_SLACK * ranks


def check_fields(ckpt: dict[str, Any], where: str) -> None:
    """Refuse the first field of `ckpt` (a loaded checkpoint from `where`) of the wrong type or out of
    range, in one line naming it. Call `check_depth` first."""
    unknown = sorted(str(k) for k in ckpt if k not in KNOWN)
    if unknown:
        raise FaceganError(f"{where} has an unknown entry {unknown[0]!r}; it is not a facegan checkpoint")
    for name in COUNTERS:
        if name in ckpt:
            _count(ckpt[name], where, name)
    if "world_size" in ckpt:
        _count(ckpt["world_size"], where, "world_size", low=1)
    for name in ("version", "config_schema"):
        if name in ckpt:
            _count(ckpt[name], where, name, low=1)
    for name in ("facegan_version", "dataset_hash"):
        if ckpt.get(name) is not None and not isinstance(ckpt[name], str):
            _bad(where, name, f"must be text, got {type(ckpt[name]).__name__}")
    # G, D and G_ema are checked against the config's shapes where they are used (check_state).
    for name in ("opt_g", "opt_d"):
        if name in ckpt:
            _optimizer(ckpt[name], where, name)
    if "rng" in ckpt:
        _rng(ckpt["rng"], where, "rng")
    if "rng_ranks" in ckpt:
        ranks = ckpt["rng_ranks"]
        if not isinstance(ranks, list) or len(ranks) != ckpt.get("world_size", len(ranks)):
            _bad(where, "rng_ranks", "must list one RNG state per rank (world_size)")
        for i, state in enumerate(ranks):
            _rng(state, where, f"rng_ranks[{i}]")
    if "scaler" in ckpt and not isinstance(ckpt["scaler"], dict):
        _bad(where, "scaler", f"must be a mapping, got {type(ckpt['scaler']).__name__}")
    if "best" in ckpt:
        _best(ckpt["best"], where)
    if "guard" in ckpt:
        _guard(ckpt["guard"], where)


def check_records(total: int, cfg: Any, ckpt: dict[str, Any], where: str) -> None:
    """Refuse a checkpoint whose records (`total` bytes) exceed what its ModelConfig `cfg` implies."""
    ranks = len(ckpt["rng_ranks"]) if isinstance(ckpt.get("rng_ranks"), list) else 1
    limit = implied_bytes(cfg, ranks)
    if total > limit:
        raise FaceganError(
            f"{where} holds {total:,} bytes, more than its config implies (at most "
            f"{limit:,} for a {cfg.size} px model with ngf {cfg.ngf}, ndf {cfg.ndf}); it "
            f"carries data facegan never writes"
        )


def _bad(where: str, name: str, problem: str) -> NoReturn:
    raise FaceganError(
        f"{where} has an invalid {name!r}: it {problem}; the checkpoint is damaged or "
        f"crafted — use another file from the run's checkpoints/ folder"
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: Any, where: str, name: str, low: int = 0) -> None:
    if not _is_int(value) or value < low:
        _bad(where, name, f"must be an integer >= {low}, got {value!r}"[:120])


def _optimizer(state: Any, where: str, name: str) -> None:
    if not (
        isinstance(state, dict)
        and isinstance(state.get("state"), dict)
        and isinstance(state.get("param_groups"), list)
        and all(isinstance(g, dict) for g in state["param_groups"])
    ):
        _bad(where, name, "must be an optimizer state (state and param_groups)")
    for entry in state["state"].values():
        if not isinstance(entry, dict) or not all(
            isinstance(v, (torch.Tensor, int, float)) for v in entry.values()
        ):
            _bad(where, name, "must hold tensors or numbers per parameter")


def _rng(state: Any, where: str, name: str) -> None:
    """The layout `checkpoint.capture_rng` writes."""
    ok = isinstance(state, dict) and {"python", "numpy", "torch", "step"} <= state.keys()
    if ok:
        py, np_state = state["python"], state["numpy"]
        ok = (
            isinstance(py, (tuple, list))
            and len(py) == 3
            and isinstance(np_state, (tuple, list))
            and len(np_state) == 5
            and isinstance(np_state[1], torch.Tensor)
            and np_state[1].numel() == 624
            and isinstance(state["torch"], torch.Tensor)
            and isinstance(state["step"], torch.Tensor)
            and all(isinstance(t, torch.Tensor) for t in state.get("cuda", []))
        )
    if not ok:
        _bad(where, name, "must be the RNG states facegan records (python, numpy, torch, cuda, step)")


def _best(best: Any, where: str) -> None:
    if not isinstance(best, dict):
        _bad(where, "best", f"must be a mapping, got {type(best).__name__}")
    if best and not (
        _is_int(best.get("step"))
        and best["step"] >= 0
        and isinstance(best.get("metric"), str)
        and _is_number(best.get("value"))
        and _is_number(best.get("score"))
    ):
        _bad(where, "best", "must name a step, a metric and finite value and score")


def _guard(guard: Any, where: str) -> None:
    if not isinstance(guard, dict):
        _bad(where, "guard", f"must be a mapping, got {type(guard).__name__}")
    scale, rollbacks, skip = guard.get("lr_scale", 1.0), guard.get("rollbacks", 0), guard.get("skip", [])
    if not (_is_number(scale) and 0 < scale <= 1):
        _bad(where, "guard", f"lr_scale must be in (0, 1], got {scale!r}")
    if not (_is_int(rollbacks) and rollbacks >= 0):
        _bad(where, "guard", f"rollbacks must be an integer >= 0, got {rollbacks!r}")
    if not isinstance(skip, list) or not all(
        isinstance(r, (list, tuple))
        and len(r) == 2
        and all(_is_int(x) and x >= 0 for x in r)
        and r[0] <= r[1]
        for r in skip
    ):
        _bad(where, "guard", "skip must be a list of [first, last] step ranges")
