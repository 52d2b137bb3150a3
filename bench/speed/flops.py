"""FLOPs per image of a training step and of a G forward pass, counted by torch's FlopCounterMode."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from bench.speed.reference import reference_models, reference_optimizers, reference_step
from bench.speed.runners import bench_config
from facegan.config.schema import ModelConfig, PerfConfig
from facegan.training.build import build_training
from facegan.training.step import sample_latent


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of matmuls/convs (forward and backward) that `fn` runs, by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def step_flops(mc: ModelConfig, batch: int = 16) -> dict[str, float]:
    """GFLOP per image of one training step (reference and facegan) and of one G forward.

    Counted on the CPU with eager modules: the count is a property of the architecture and the step,
    not of the device or of compile. Convolution FLOPs are linear in the batch, so a small one suffices.
    BatchNorm/activations/Adam are not counted (they are bandwidth-, not FLOP-bound).
    """
    cpu = torch.device("cpu")
    real = torch.rand(batch, mc.channels, mc.size, mc.size) * 2 - 1
    net_g, net_d = reference_models(mc, cpu)
    opt_g, opt_d = reference_optimizers(net_g, net_d)
    ref = count_flops(lambda: reference_step(net_g, net_d, opt_g, opt_d, nn.BCELoss(), real, mc.latent_dim))
    # facegan's step as `facegan train` builds it, on the plain eager fp32 path.
    plain = PerfConfig(amp="off", channels_last="off", compile="off", fused_adam="off", resident="off")
    training = build_training(bench_config(mc, batch, plain), cpu)
    ours = count_flops(lambda: training.step(0, real))
    g, rng = training.g, training.step_rng
    g.eval()
    with torch.inference_mode():
        gen = count_flops(lambda: g(sample_latent(batch, mc.latent_dim, rng)))
    return {
        "reference_step": ref / batch / 1e9,
        "facegan_step": ours / batch / 1e9,
        "g_forward": gen / batch / 1e9,
    }
