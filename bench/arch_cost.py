"""Cost of each architecture preset: FLOPs per image of a training step and of G, and measured img/s.

    python bench/arch_cost.py                          # 64 px, ngf 32 and 64, this machine's default device
    python bench/arch_cost.py --size 128 --ngf 64 --device cuda --steps 50

FLOPs are counted by torch's FlopCounterMode over one whole `train_step` (forward and backward of D and
G; not the lazy R1/R2 steps, whose double backward it cannot trace) — convolutions and matmuls only, so
GPU users can turn them into an expected step time for their device's achieved FLOP/s. img/s is timed
on the device with the run's default speed settings (`PerfConfig()` resolved), after warm-up.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facegan.config.files import preset_config, with_overrides
from facegan.config.schema import PerfConfig, RunConfig
from facegan.networks.factory import build_models
from facegan.runtime.device import pick_device
from facegan.training.build import build_training
from facegan.training.step import sample_latent

PRESETS = ("dcgan", "dcgan-plus", "r3gan")


def step_flops(cfg: RunConfig, batch: int = 8) -> tuple[float, float]:
    """(GFLOP per image of a training step without gradient penalty; G-forward GFLOP per image).

    FlopCounterMode cannot trace the double backward of R1/R2, so the lazy penalty steps (every
    `r1_every`) are left out of the count; the measured img/s includes them.
    """
    # The run's step as `facegan train` builds it, eager fp32 on the CPU: FLOPs are the architecture's.
    plain = PerfConfig(amp="off", channels_last="off", compile="off", fused_adam="off", resident="off")
    training = build_training(cfg.replace(perf=plain), torch.device("cpu"))
    rng = torch.Generator().manual_seed(0)
    real = torch.rand(batch, 3, cfg.model.size, cfg.model.size) * 2 - 1
    with FlopCounterMode(display=False) as counter:
        training.step(1, real)  # step 1: no lazy penalty
    step = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        training.g(sample_latent(batch, cfg.model.latent_dim, rng))
    return step / batch / 1e9, counter.get_total_flops() / batch / 1e9


def images_per_second(cfg: RunConfig, device: torch.device, batch: int, steps: int) -> float:
    """Training img/s with the device's default speed settings (warm-up excluded), of the whole step
    `facegan train` runs (EMA update included where the preset has one)."""
    training = build_training(cfg, device)
    real = torch.rand(batch, 3, cfg.model.size, cfg.model.size, device=device) * 2 - 1
    if training.perf.channels_last:
        real = real.contiguous(memory_format=torch.channels_last)

    def run(n: int, first: int) -> None:
        for i in range(n):
            training.step(first + i, real)
        if device.type == "cuda":
            torch.cuda.synchronize()

    run(2, 1)
    t0 = time.perf_counter()
    run(steps, 0)  # starts on a penalty step; `steps` a multiple of the interval averages it right
    return steps * batch / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--ngf", type=int, action="append", help="widths to measure (default 32 and 64)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=16, help="timed steps per row (0: FLOPs only)")
    args = p.parse_args(argv)
    device = pick_device(args.device)
    print(
        f"device {device}, size {args.size}, batch {args.batch_size}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print(
        f"{'preset':<12} {'ngf':>4} {'G params':>9} {'D params':>9} {'step GFLOP/img':>15} "
        f"{'G fwd GFLOP/img':>16} {'img/s':>8}"
    )
    for ngf in args.ngf or [32, 64]:
        for preset in PRESETS:
            cfg = with_overrides(preset_config(preset), {"size": args.size, "ngf": ngf, "ndf": ngf})
            g, d = build_models(cfg.model, gan=cfg.gan)
            n_g, n_d = (sum(x.numel() for x in m.parameters()) / 1e6 for m in (g, d))
            step, gen = step_flops(cfg)
            ips = images_per_second(cfg, device, args.batch_size, args.steps) if args.steps else float("nan")
            print(
                f"{preset:<12} {ngf:>4} {n_g:>8.2f}M {n_d:>8.2f}M {step:>15.3f} {gen:>16.3f} {ips:>8.1f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
