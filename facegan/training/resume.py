"""Resuming a run: which checkpoint `--resume` means, which flags may change, and putting the
checkpoint's training state back into freshly built models, optimizers and RNGs."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from facegan.config.schema import RunConfig, section_types
from facegan.data.sources import SYNTHETIC
from facegan.errors import FaceganError
from facegan.networks.checkpoint import (
    check_state,
    checkpoint_config,
    load_checkpoint,
    load_state,
    rng_for_rank,
)
from facegan.networks.factory import build_models
from facegan.tracking.runs import latest_run_with_checkpoint
from facegan.training.distributed import SINGLE, Dist
from facegan.training.rngs import RunRngs

if TYPE_CHECKING:
    from facegan.training.build import Training


def resolve_resume(resume: str, runs_root: Path) -> Path:
    """Path of the checkpoint file `--resume auto|PATH` refers to."""
    if resume == "auto":
        run = latest_run_with_checkpoint(runs_root)
        if run is None:
            raise FaceganError(f"--resume auto found no run with a checkpoint under {str(runs_root)!r}")
        return run / "checkpoints" / "latest.pt"
    path = Path(resume)
    if path.is_dir():
        path = path / "checkpoints" / "latest.pt"
    if not path.is_file():
        raise FaceganError(f"--resume {resume!r}: no checkpoint there; pass a .pt file, a run folder or auto")
    return path


def check_resume_overrides(
    cfg: RunConfig, overrides: dict[str, Any], resumable: Collection[str], dataset_hash: str | None
) -> dict[str, Any]:
    """The `overrides` (flat config fields, plus "preset") a resume of `cfg` may apply, minus "preset".

    Fields in `resumable` may change. Any other flag may be repeated with the checkpoint's value (so
    the original command plus --resume works) but not changed. "data" may point somewhere new: train()
    then checks that it holds the same images (content hash) and records the new path.
    """
    current: dict[str, Any] = {"preset": cfg.preset}
    for section in section_types():
        current.update(dataclasses.asdict(getattr(cfg, section)))
    changed = [
        k
        for k, v in overrides.items()
        if k not in resumable and k != "data" and k in current and current[k] != v
    ]
    if changed:
        listed = ", ".join(
            f"--{k.replace('_', '-')} (checkpoint {current[k]!r}, given {overrides[k]!r})" for k in changed
        )
        allowed = ", ".join("--" + f.replace("_", "-") for f in sorted(resumable))
        raise FaceganError(
            f"{listed}: cannot change when resuming (the checkpoint's config is used); drop "
            f"{'it' if len(changed) == 1 else 'them'} or start a new run; only {allowed} can"
        )
    if overrides.get("data", cfg.train.data) != cfg.train.data and dataset_hash is None:
        raise FaceganError(
            f"this checkpoint records no dataset hash, so --data {overrides['data']!r} cannot "
            f"be checked against {cfg.train.data!r}; resume without --data"
        )
    return {k: v for k, v in overrides.items() if k != "preset"}


def open_resume(
    resume: str,
    runs_root: Path,
    overrides_on_resume: dict[str, Any] | None,
    resumable: Collection[str] | None,
) -> tuple[RunConfig, dict[str, Any], Path]:
    """The config, checkpoint and checkpoint path `--resume` continues, checked against each other."""
    ckpt_path = resolve_resume(resume, runs_root)
    ckpt = load_checkpoint(ckpt_path)
    cfg = checkpoint_config(ckpt, ckpt_path)
    overrides_on_resume = overrides_on_resume or {}
    if resumable is not None:
        overrides_on_resume = check_resume_overrides(
            cfg, overrides_on_resume, resumable, ckpt.get("dataset_hash")
        )
    if overrides_on_resume:
        from facegan.config.files import with_overrides

        cfg = with_overrides(cfg, overrides_on_resume)
    if (
        "data" not in overrides_on_resume
        and cfg.train.data != SYNTHETIC
        and not Path(cfg.train.data).exists()
    ):
        raise FaceganError(
            f"the dataset this run was trained on, {cfg.train.data!r}, is gone; if it "
            f"moved, resume with --data NEW_PATH (it must hold the same images)"
        )
    check_resume_state(cfg, ckpt, ckpt_path)
    return cfg, ckpt, ckpt_path


RESUME_KEYS = ("G", "D", "opt_g", "opt_d", "rng", "step")


def load_training_state(
    ckpt: dict[str, Any], source: str, training: Training, rngs: RunRngs, dist: Dist = SINGLE
) -> int:
    """Put a checkpoint's training state (weights, optimizers, scaler, the run's generators) into the
    live objects of `training` and `rngs`; returns its step. Each rank takes its own generators' state
    where the checkpoint has one per rank. The learning rates are not set here: the trainer applies
    its schedule at the returned step (facegan.training.schedule)."""
    load_state(training.g, ckpt["G"], "generator", source)
    load_state(training.d, ckpt["D"], "discriminator", source)
    if training.ema is not None:
        if "G_ema" not in ckpt:
            raise FaceganError(
                f"{source!r} has no G_ema weights although its config asks for "
                f"an EMA generator; the checkpoint is incomplete"
            )
        load_state(training.ema.model, ckpt["G_ema"], "EMA generator", source)
    training.opt_g.load_state_dict(ckpt["opt_g"])
    training.opt_d.load_state_dict(ckpt["opt_d"])
    if training.scaler is not None and ckpt.get("scaler"):
        training.scaler.load_state_dict(ckpt["scaler"])
    if not rngs.restore(rng_for_rank(ckpt, dist.rank, dist.world)) and dist.is_main:
        print(
            f"note: {source!r} was saved on another kind of device; its noise generator cannot continue "
            f"here, so the run continues with a fresh one seeded from it (reproducible, but not the "
            f"noise the original device would have drawn)",
            file=sys.stderr,
        )
    return int(ckpt["step"])


def check_resume_state(cfg: RunConfig, ckpt: dict[str, Any], path: Path) -> None:
    """Refuse a checkpoint whose weights do not fit its own config, before the real models are built:
    the expected shapes come from G and D built on the meta device, which allocates nothing."""
    missing = [k for k in RESUME_KEYS if k not in ckpt]
    if missing:
        raise FaceganError(
            f"{str(path)!r} has no {missing[0]!r} entry; the checkpoint is incomplete — use "
            f"another file from the run's checkpoints/ folder"
        )
    with torch.device("meta"):
        g, d = build_models(cfg.model, seed=cfg.train.seed, gan=cfg.gan)
    check_state(g, ckpt["G"], "generator", path)
    check_state(d, ckpt["D"], "discriminator", path)
    if cfg.gan.ema_kimg > 0 and "G_ema" in ckpt:  # a missing G_ema is reported where it is loaded
        check_state(g, ckpt["G_ema"], "EMA generator", path)
