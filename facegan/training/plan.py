"""`facegan train --dry-run`: resolve everything, build the models, run one step, write nothing; and
the checks a run makes before it trains."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from facegan.config.schema import RunConfig
from facegan.data.dataset import resolve_dataset
from facegan.data.prepare import heldout_split, is_prepared, source_listing
from facegan.data.shard import check_batch_fits
from facegan.data.sources import SYNTHETIC
from facegan.errors import FaceganError
from facegan.runtime.device import pick_device
from facegan.tracking.runs import next_run_dir, run_name
from facegan.tracking.trackers import check_available as check_trackers
from facegan.training.build import build_training
from facegan.training.registered import check_registered
from facegan.training.schedule import steps_per_epoch


def dry_run(cfg: RunConfig, runs_root: Path = Path("runs")) -> list[str]:
    """Check that `train(cfg)` would start, writing nothing: resolve the device and speed settings,
    count the data, build the models and run one training step on a random batch of 2. Returns the
    plan as lines to print."""
    tc = cfg.train
    device = pick_device(tc.device)
    check_registered(cfg)
    check_trackers(tc.trackers)
    if tc.eval_every:
        check_eval_setup(tc.eval_metrics, tc.inception_weights)
    count, heldout, data = _dataset_plan(tc.data, cfg.model.size, tc.synthetic_count)
    trained = count if tc.train_on_heldout else count - heldout  # what BatchSource draws batches from
    check_batch_fits(tc.batch_size, trained, count - trained)
    per_epoch = steps_per_epoch(trained, tc.batch_size)
    total = tc.total_steps(per_epoch)
    length = "--steps" if tc.steps is not None else f"{tc.epochs} epochs of {per_epoch:,}"
    # The models' own seeded generator and a private step rng: the process's global RNGs stay untouched.
    training = build_training(cfg, device)
    perf, g, d = training.perf, training.g, training.d
    shape = (2, cfg.model.channels, cfg.model.size, cfg.model.size)
    real = torch.rand(shape, generator=training.step_rng, device=device) * 2 - 1
    if perf.channels_last:
        real = real.contiguous(memory_format=torch.channels_last)
    t0 = time.perf_counter()
    # Step 0 also runs the lazy R1/R2 penalties, so every configured term is exercised.
    stats = training.step(0, real)
    loss_d, loss_g = float(stats.loss_d), float(stats.loss_g)
    seconds = time.perf_counter() - t0
    if not (np.isfinite(loss_d) and np.isfinite(loss_g)):
        raise FaceganError(
            f"the first step on a random batch gave Loss_D {loss_d}, Loss_G {loss_g}; "
            f"check the learning rates and loss settings"
        )
    n_g = sum(p.numel() for p in g.parameters())
    n_d = sum(p.numel() for p in d.parameters())
    return [
        f"preset         {cfg.preset} ({cfg.model.arch}, {cfg.model.size}px, loss {cfg.gan.loss})",
        f"device         {device}: {perf.describe()}",
        f"data           {data}",
        f"steps          {total:,} ({length} steps, batch {tc.batch_size})",
        f"run folder     {next_run_dir(runs_root, run_name(cfg))}",
        f"generator      {n_g:,} parameters",
        f"discriminator  {n_d:,} parameters",
        f"first step     ok on a random batch of 2 in {seconds:.2f} s "
        f"(Loss_D {loss_d:.3f}, Loss_G {loss_g:.3f})",
        "dry run: nothing was written",
    ]


def _dataset_plan(data: str, size: int, synthetic_count: int) -> tuple[int, int, str]:
    """(image count, how many of them are held out from training, description) of `data`, without
    preparing or caching anything (an unprepared source will be split as `prepare` splits it)."""
    if data == SYNTHETIC:
        return (
            synthetic_count,
            _heldout(synthetic_count),
            (f"{synthetic_count:,} synthetic faces (drawn into the dataset cache on first use)"),
        )
    if is_prepared(data):
        ds = resolve_dataset(data, size)  # opens a prepared folder as it is; checks its image size
        return len(ds), len(ds.heldout_rows), f"{data} (prepared, {len(ds):,} images)"
    listing = source_listing(data, synthetic_count)  # the checks a real run makes: exists, holds images
    count = len(listing.images)
    return (
        count,
        _heldout(count),
        (f"{data} ({listing.kind}, {count:,} image files, prepared into the dataset cache on first use)"),
    )


def _heldout(count: int) -> int:
    """How many of `count` images the automatic preparation holds out for metrics."""
    return heldout_split(count)["heldout_count"]


def check_eval_setup(metrics: str, inception_weights: str | None) -> None:
    """Fail before training, not hours in, on an unknown metric or missing Inception weights."""
    from facegan.metrics import parse_metrics, resolve_weights

    if any(p.kind in ("fid", "kid") for p in parse_metrics(metrics.split(","))):
        resolve_weights(inception_weights)
