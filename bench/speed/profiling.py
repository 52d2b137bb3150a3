"""torch.profiler tables of one warmed-up training step of the reference (row a) and facegan (row b)."""

from __future__ import annotations

import torch
from torch import nn

from bench.speed.reference import reference_models, reference_optimizers, reference_step
from bench.speed.runners import FaceganRunner
from bench.speed.staging import Staged
from facegan.config.schema import ModelConfig, PerfConfig
from facegan.runtime.perf import resolve


def profile_steps(
    staged: Staged, mc: ModelConfig, batch_size: int, device: torch.device, limit: int = 14
) -> dict[str, str]:
    """torch.profiler tables (self CPU time) of one warmed-up step of rows a (compute only) and b."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sort = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    tables = {}
    fg = FaceganRunner(staged.packed, resolve(PerfConfig(), device), mc, batch_size, device)
    fg.step()
    fg.end_window()
    with profile(activities=acts) as prof:
        fg.step()
        fg.end_window()
    tables["b"] = prof.key_averages().table(sort_by=sort, row_limit=limit)
    net_g, net_d = reference_models(mc, device)
    opt_g, opt_d = reference_optimizers(net_g, net_d)
    real = torch.rand(batch_size, mc.channels, mc.size, mc.size, device=device) * 2 - 1
    reference_step(net_g, net_d, opt_g, opt_d, nn.BCELoss(), real, mc.latent_dim)
    with profile(activities=acts) as prof:
        reference_step(net_g, net_d, opt_g, opt_d, nn.BCELoss(), real, mc.latent_dim)
    tables["a (compute only, no data loading)"] = prof.key_averages().table(sort_by=sort, row_limit=limit)
    return tables
