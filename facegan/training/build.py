"""One way to build a training run: the models, EMA, optimizers, speed paths and batches one step needs.

The trainer (facegan.training.trainer), `bench/` and the tests all build training here, so a change to
the training setup (a new stabilizer, a speed path, the batch order) reaches what the benchmark measures
and what the tests check as soon as it reaches `facegan train`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from facegan.config.schema import RunConfig
from facegan.data.dataset import BatchSource, PackedDataset
from facegan.data.shard import Shard
from facegan.networks.ema import EMA
from facegan.networks.factory import build_models
from facegan.runtime.perf import Perf, make_optimizers, make_scaler, prepare_models, uses_cuda_graphs
from facegan.runtime.perf import resolve as resolve_perf
from facegan.training.step import StepStats, train_step


@dataclass
class Training:
    """Everything a training step touches, built by `build_training`."""

    cfg: RunConfig  # with `perf` resolved for `device` (no "auto" left): what a run records
    device: torch.device
    perf: Perf
    g: nn.Module  # the networks that own the weights (checkpoints, EMA, export)
    d: nn.Module
    g_call: nn.Module  # what the step calls: g and d themselves, or their torch.compile wrappers
    d_call: nn.Module
    ema: EMA | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    step_rng: torch.Generator  # the step's noise; checkpoints carry its state
    batches: BatchSource | None  # None when built without a dataset (the caller supplies batches)
    # This process's rows of each global batch and the gradient average over the processes: set for
    # its rank by facegan.training.distributed.adapt (one process: all rows, and no averaging to do).
    shard: Shard | None = None
    sync: Callable[[torch.optim.Optimizer], None] | None = None

    def step(self, step: int, real: torch.Tensor | None = None) -> StepStats:
        """One training step at global `step`, exactly as `facegan train` runs it on this rank:
        `train_step` on this rank's rows of the step's batch (or on `real`, rows the caller supplies),
        then the EMA update. Returns the stats on the device (no sync)."""
        if real is None:
            assert self.batches is not None, "built without a dataset: pass the batch"
            real = self.batches.batch(step)
        if uses_cuda_graphs(self.perf, self.device):
            # A new step: the graphs' outputs of the previous step may now be overwritten.
            torch.compiler.cudagraph_mark_step_begin()
        stats = train_step(
            self.g_call,
            self.d_call,
            self.opt_g,
            self.opt_d,
            real,
            self.step_rng,
            gan=self.cfg.gan,
            step=step,
            amp_dtype=self.perf.amp_dtype,
            scaler=self.scaler,
            shard=self.shard,
            sync=self.sync,
        )
        if self.ema is not None:
            self.ema.update(self.g)
        return stats


def batch_source(cfg: RunConfig, ds: PackedDataset, device: torch.device) -> BatchSource:
    """The run's batches of `ds`: its seed's order, its flips, its speed paths' layout and residency."""
    perf = resolve_perf(cfg.perf, device)
    tc = cfg.train
    return BatchSource(
        ds,
        tc.batch_size,
        tc.seed,
        device,
        hflip=tc.hflip,
        resident=perf.resident,
        channels_last=perf.channels_last,
        include_heldout=tc.train_on_heldout,
    )


def build_training(cfg: RunConfig, device: torch.device, ds: PackedDataset | None = None) -> Training:
    """Fresh G, D (and EMA G), optimizers, scaler and step RNG for `cfg` on `device`, with the speed
    settings resolved for it; batches of `ds` when given. Draws from no global RNG (the models and
    the step have their own seeded generators)."""
    perf = resolve_perf(cfg.perf, device)
    # The config records what "auto" chose on this device (e.g. amp "bf16"), so the run folder and every
    # checkpoint say how it was computed, and a resume keeps the same numerics unless told otherwise.
    cfg = cfg.replace(perf=perf.as_config(cfg.perf.compile))
    tc = cfg.train
    batches = batch_source(cfg, ds, device) if ds is not None else None
    g, d = build_models(cfg.model, seed=tc.seed, gan=cfg.gan)
    g, d = g.to(device), d.to(device)
    g_call, d_call = prepare_models(g, d, perf)
    ema = EMA(g, cfg.gan.ema_kimg, tc.batch_size) if cfg.gan.ema_kimg > 0 else None
    opt_g, opt_d = make_optimizers(g, d, cfg.optim, perf)
    return Training(
        cfg,
        device,
        perf,
        g,
        d,
        g_call,
        d_call,
        ema,
        opt_g,
        opt_d,
        make_scaler(perf, device),
        torch.Generator(device).manual_seed(tc.seed),
        batches,
    )
