"""Fast paths: resolve the PerfConfig for a device and apply it to models, optimizers and batches.

Each setting keeps the seed recipe's semantics; `tests/test_perf.py` checks the fast and plain paths
compute the same step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from facegan.config import OptimConfig, PerfConfig


@dataclass(frozen=True)
class Perf:
    """Concrete speed settings for one device (no "auto" left)."""

    amp_dtype: torch.dtype | None
    channels_last: bool
    compile_mode: str | None
    fused_adam: bool
    resident: bool

    @property
    def needs_scaler(self) -> bool:
        return self.amp_dtype == torch.float16


def resolve(cfg: PerfConfig, device: torch.device) -> Perf:
    """Turn "auto" into what is fastest and safe on `device`."""
    cuda = device.type == "cuda"
    # channels_last and the fused Adam kernel measured faster on CPU too (+9-12% and ~+5% of a
    # DCGAN-64 step, BENCHMARKS.md); MPS keeps the plain path.
    fast_layout = device.type in ("cuda", "cpu")
    if cfg.amp == "auto":
        amp = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else None
    else:
        amp = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.amp]
    return Perf(
        amp_dtype=amp,
        channels_last=fast_layout if cfg.channels_last == "auto" else cfg.channels_last == "on",
        compile_mode=None if cfg.compile == "off" else cfg.compile,
        # fused Adam updates all of a group's parameters in one kernel (CUDA and CPU); foreach on
        # CPU still loops over tensors in this torch build.
        fused_adam=fast_layout if cfg.fused_adam == "auto" else cfg.fused_adam == "on",
        resident=device.type != "cpu" if cfg.resident == "auto" else cfg.resident == "on",
    )


def prepare_models(g: nn.Module, d: nn.Module, perf: Perf) -> tuple[nn.Module, nn.Module]:
    """Apply memory format in place; return the modules the step should call (compiled if asked).

    The originals keep ownership of the parameters, so checkpoints never see `_orig_mod.` keys.
    """
    if perf.channels_last:
        g.to(memory_format=torch.channels_last)
        d.to(memory_format=torch.channels_last)
    if perf.compile_mode is None:
        return g, d
    return torch.compile(g, mode=perf.compile_mode), torch.compile(d, mode=perf.compile_mode)


def make_optimizers(g: nn.Module, d: nn.Module, optim: OptimConfig, perf: Perf | None = None
                    ) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Adam(lr, betas) for G and D; fused (one kernel) or foreach (batched) implementation."""
    fused = bool(perf and perf.fused_adam)
    kw = {"betas": (optim.beta1, optim.beta2), "fused": True} if fused else {
        "betas": (optim.beta1, optim.beta2), "foreach": True}
    return (torch.optim.Adam(g.parameters(), lr=optim.lr_g, **kw),
            torch.optim.Adam(d.parameters(), lr=optim.lr_d, **kw))


def make_scaler(perf: Perf, device: torch.device) -> torch.amp.GradScaler | None:
    """fp16 needs loss scaling to keep small gradients from flushing to zero; bf16 and fp32 do not."""
    return torch.amp.GradScaler(device.type) if perf.needs_scaler else None
