"""The timed workloads: the reference recipe (row a), facegan training (rows b, f, c) and G inference."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.speed.env import sync
from bench.speed.reference import reference_models, reference_optimizers, reference_step
from facegan.config.schema import ModelConfig, PerfConfig, RunConfig, TrainConfig
from facegan.data.dataset import PackedDataset
from facegan.networks.factory import build_models
from facegan.runtime.perf import Perf, prepare_models
from facegan.training.build import build_training
from facegan.training.step import StepStats, sample_latent


class Runner:
    """One timed workload: `step()` does one unit and returns the images it processed."""

    images_per_step: int = 0

    def step(self) -> int:
        raise NotImplementedError

    def end_window(self) -> None:
        """Called inside the timed region at each window end: the sync (and any stats read-back)."""

    def close(self) -> None:
        """Release workers and memory before the next row runs."""


class ReferenceRunner(Runner):
    """Row a: ImageFolder + DataLoader(2 workers, shuffle) feeding `reference_step`, epoch after epoch."""

    def __init__(
        self, image_root: Path, mc: ModelConfig, batch_size: int, workers: int, device: torch.device
    ) -> None:
        from torchvision import datasets, transforms

        torch.manual_seed(0)
        tf = transforms.Compose(
            [
                transforms.Resize(mc.size),
                transforms.CenterCrop(mc.size),
                transforms.ToTensor(),
                transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
            ]
        )
        self.dataset = datasets.ImageFolder(root=str(image_root), transform=tf)
        # The recipe's loader, except that workers persist across epochs: on the full 202,599-image
        # CelebA the recipe restarts its workers once per 1,583 steps, on a 6,000-image subset once per
        # 47, so restarts would charge the reference a cost that the real dataset amortises.
        self.loader: torch.utils.data.DataLoader | None = torch.utils.data.DataLoader(
            self.dataset,
            batch_size=batch_size,
            shuffle=True,
            num_workers=workers,
            persistent_workers=workers > 0,
        )
        self.batches: Iterator[Any] | None = iter(self.loader)
        self.device, self.nz = device, mc.latent_dim
        self.net_g, self.net_d = reference_models(mc, device)
        self.opt_g, self.opt_d = reference_optimizers(self.net_g, self.net_d)
        self.criterion = nn.BCELoss()
        self.images_per_step = batch_size
        self.last: tuple[float, ...] = ()

    def step(self) -> int:
        assert self.batches is not None and self.loader is not None
        try:
            data = next(self.batches)
        except StopIteration:  # the recipe's next `for epoch` pass (same, persistent workers)
            self.batches = iter(self.loader)
            data = next(self.batches)
        real = data[0].to(self.device)
        self.last = reference_step(
            self.net_g, self.net_d, self.opt_g, self.opt_d, self.criterion, real, self.nz
        )
        return real.size(0)  # the epoch's last batch is smaller; count what was really trained on

    def end_window(self) -> None:
        sync(self.device)

    def losses(self) -> dict[str, float]:
        """The last step's Loss_D, Loss_G, D(x), D(G(z)) as the recipe prints them."""
        return dict(zip(("loss_d", "loss_g", "d_real", "d_fake_before", "d_fake_after"), self.last))

    def close(self) -> None:
        self.batches = self.loader = None  # their finalisers shut the worker processes down
        gc.collect()


# ----------------------------------------------------------------------------- (b, c) facegan


def bench_config(mc: ModelConfig, batch_size: int, perf: Perf | PerfConfig, seed: int = 0) -> RunConfig:
    """The run a facegan row measures: every default (the seed recipe) but the model, batch and speed
    settings; built by `facegan.training.build.build_training`, as `facegan train` builds it."""
    if isinstance(perf, Perf):
        perf = perf.as_config(perf.compile_mode or "off")
    return RunConfig(model=mc, train=TrainConfig(batch_size=batch_size, seed=seed), perf=perf)


class FaceganRunner(Runner):
    """Rows b and c: exactly what `facegan train` does per step, from a packed dataset.

    `build_training` → `Training.step` (BatchSource → train_step → EMA update where configured) → stats
    stacked and summed on the device; the sums are read back at window ends, the loop's log interval.
    """

    def __init__(
        self, packed: Path, perf: Perf, mc: ModelConfig, batch_size: int, device: torch.device, seed: int = 0
    ) -> None:
        cfg = bench_config(mc, batch_size, perf, seed)
        self.training = build_training(cfg, device, PackedDataset(packed))
        self.perf, self.device = self.training.perf, device
        self.training.g.train()
        self.training.d.train()
        self.images_per_step = batch_size
        self.global_step = 0
        self.sums: torch.Tensor | None = None
        self.n = 0
        self.last: dict[str, float] = {}

    def step(self) -> int:
        stats = self.training.step(self.global_step)
        self.global_step += 1
        vec = torch.stack(list(stats))  # as the loop: accumulate on the device, no sync per step
        self.sums = vec if self.sums is None else self.sums + vec
        self.n += 1
        return self.images_per_step

    def end_window(self) -> None:
        if self.sums is not None:
            self.last = dict(zip(StepStats._fields, (self.sums / self.n).tolist()))  # the sync
            self.sums, self.n = None, 0
        sync(self.device)

    def losses(self) -> dict[str, float]:
        """Means of the step statistics over the last window."""
        return self.last


class GeneratorRunner(Runner):
    """gen rows: G in eval mode under inference_mode, z drawn on the device, output left there."""

    def __init__(self, perf: Perf, mc: ModelConfig, batch_size: int, device: torch.device) -> None:
        self.perf, self.device, self.batch_size, self.latent_dim = perf, device, batch_size, mc.latent_dim
        g, d = build_models(mc)
        self.g = g.to(device).eval()
        # Same transformations as training (memory format, torch.compile); D is never called.
        self.g_call, _ = prepare_models(
            self.g, d, Perf(perf.amp_dtype, perf.channels_last, perf.compile_mode, False, False)
        )
        self.rng = torch.Generator(device).manual_seed(0)
        self.images_per_step = batch_size

    def step(self) -> int:
        with (
            torch.inference_mode(),
            torch.autocast(
                self.device.type, dtype=self.perf.amp_dtype, enabled=self.perf.amp_dtype is not None
            ),
        ):
            self.g_call(sample_latent(self.batch_size, self.latent_dim, self.rng))
        return self.batch_size

    def end_window(self) -> None:
        sync(self.device)
