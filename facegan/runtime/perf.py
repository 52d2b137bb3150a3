"""Fast paths: resolve the PerfConfig for a device and apply it to models, optimizers and batches.

Each setting keeps the seed recipe's semantics; `tests/runtime/test_perf.py` checks the fast and plain paths
compute the same step.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from facegan.config.schema import AmpMode, AutoOnOff, CompileMode, ModelConfig, OptimConfig, PerfConfig


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

    def as_config(self, compile_setting: CompileMode) -> PerfConfig:
        """The explicit PerfConfig of these settings (no "auto"), to record what a run used."""
        amps: dict[torch.dtype | None, AmpMode] = {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}
        amp = amps[self.amp_dtype]
        onoff: dict[bool, AutoOnOff] = {True: "on", False: "off"}
        return PerfConfig(
            amp=amp,
            channels_last=onoff[self.channels_last],
            compile=compile_setting,
            fused_adam=onoff[self.fused_adam],
            resident=onoff[self.resident],
        )

    @property
    def precision(self) -> str:
        """ "bf16", "fp16" or "fp32": what the step computes in."""
        return _DTYPE_NAMES.get(self.amp_dtype, "fp32")

    def describe(self) -> str:
        """One line for the progress bar and the run's start, e.g. "bf16 autocast, channels_last"."""
        parts = [
            f"{self.precision} autocast" if self.amp_dtype else "fp32",
            "channels_last" if self.channels_last else "NCHW",
            "fused Adam" if self.fused_adam else "foreach Adam",
        ]
        if self.compile_mode:
            parts.append(f"compile={self.compile_mode}")
        if self.resident:
            parts.append("device-resident data")
        return ", ".join(parts)


_DTYPE_NAMES: dict[torch.dtype | None, str] = {torch.bfloat16: "bf16", torch.float16: "fp16"}


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 natively (AVX512-BF16 or AMX tiles), as torch's CPU dispatcher
    sees it. Elsewhere oneDNN emulates bf16 and it is slower than fp32."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def resolve(cfg: PerfConfig, device: torch.device) -> Perf:
    """Turn "auto" into what is fastest and safe on `device`."""
    cuda = device.type == "cuda"
    # channels_last and the fused Adam kernel measured faster on CPU too (+9-12% and ~+5% of a
    # DCGAN-64 step, BENCHMARKS.md); MPS keeps the plain path.
    fast_layout = device.type in ("cuda", "cpu")
    if cfg.amp == "auto":
        # bf16 autocast: on CUDA where supported; on a CPU only with native bf16 (1.9x a fp32
        # DCGAN-64 step on AVX512-BF16, same quality and bit-exact resume: BENCHMARKS.md).
        native = torch.cuda.is_bf16_supported() if cuda else device.type == "cpu" and cpu_has_native_bf16()
        amp = torch.bfloat16 if native else None
    else:
        amp = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.amp]
    compile_mode = None if cfg.compile == "off" else cfg.compile
    # channels_last with torch.compile on CUDA: inductor's backward of the DCGAN G's first
    # ConvTranspose failed its own stride assertion on an H200 (torch 2.11, bench/results/
    # gpu-check-2026-12-04-h200-run1.md), so "auto" picks NCHW there; "on" still asks for it.
    auto_layout = fast_layout and not (cuda and compile_mode is not None)
    return Perf(
        amp_dtype=amp,
        channels_last=auto_layout if cfg.channels_last == "auto" else cfg.channels_last == "on",
        compile_mode=compile_mode,
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
    # torch.compile's stubs return a plain Callable; given a module it returns an nn.Module
    # (torch._dynamo's OptimizedModule).
    g_call = cast(nn.Module, torch.compile(g, mode=perf.compile_mode))
    d_call = cast(nn.Module, torch.compile(d, mode=perf.compile_mode))
    if uses_cuda_graphs(perf, next(g.parameters()).device):
        g_call, d_call = GraphOutputs(g_call), GraphOutputs(d_call)
    return g_call, d_call


def uses_cuda_graphs(perf: Perf, device: torch.device) -> bool:
    """True when torch.compile replays CUDA graphs: mode reduce-overhead on a CUDA device."""
    return perf.compile_mode == "reduce-overhead" and device.type == "cuda"


class GraphOutputs(nn.Module):
    """A CUDA-graphed module whose outputs are copied out of the graphs' static memory.

    torch.compile(mode="reduce-overhead") replays CUDA graphs that write their outputs into a memory
    pool that later replays reuse. A GAN step keeps G's images and D's logits alive across several
    replays (D runs on the real batch, the fakes, then the fakes again for G), and torch refuses to
    read an output that a later replay overwrote (measured on an H200: the step failed at its first
    G update). Cloning outside the compiled region is torch's documented remedy; the step also marks
    each new step (`torch.compiler.cudagraph_mark_step_begin`, in `facegan.training.build.Training.step`).
    """

    def __init__(self, compiled: nn.Module) -> None:
        super().__init__()
        self.compiled = compiled

    @property
    def cfg(self) -> ModelConfig:
        return model_config(self.compiled)

    @property
    def eager(self) -> nn.Module:
        """The uncompiled module (penalties need double backward, which compiled graphs lack)."""
        # nn.Module.__getattr__ is typed Tensor | Module; OptimizedModule keeps the original module here.
        return cast(nn.Module, self.compiled._orig_mod)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.compiled(x)
        return out.clone()


def make_optimizers(
    g: nn.Module, d: nn.Module, optim: OptimConfig, perf: Perf | None = None
) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Adam(lr, betas) for G and D; fused (one kernel) or foreach (batched) implementation."""
    fused = bool(perf and perf.fused_adam)
    betas = (optim.beta1, optim.beta2)

    def adam(params: Iterator[nn.Parameter], lr: float) -> torch.optim.Adam:
        if fused:
            return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
        return torch.optim.Adam(params, lr=lr, betas=betas, foreach=True)

    return adam(g.parameters(), optim.lr_g), adam(d.parameters(), optim.lr_d)


def make_scaler(perf: Perf, device: torch.device) -> torch.amp.GradScaler | None:
    """fp16 needs loss scaling to keep small gradients from flushing to zero; bf16 and fp32 do not."""
    return torch.amp.GradScaler(device.type) if perf.needs_scaler else None


class InferenceGenerator(nn.Module):
    """A generator for inference with the fast settings of its device: channels_last weights and the
    forward pass under autocast (bf16 on CUDA and on CPUs with native bf16), returning fp32 images.

    It wraps the generator rather than changing it, so the wrapped module's weights and state-dict
    keys stay those of G (export it, not the wrapper). Output is deterministic and independent of the
    batch a latent is generated in, as `tests/sampling/test_generate.py` checks.
    """

    def __init__(self, g: nn.Module, perf: Perf) -> None:
        super().__init__()
        self.g = g.to(memory_format=torch.channels_last) if perf.channels_last else g
        self.cfg = model_config(g)
        self.amp_dtype = perf.amp_dtype

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        enabled = self.amp_dtype is not None
        with torch.autocast(z.device.type, dtype=self.amp_dtype or torch.float32, enabled=enabled):
            images: torch.Tensor = self.g(z)
            return images.float()


def model_config(g: nn.Module) -> ModelConfig:
    """The ModelConfig of a facegan network (G or D), or of a module wrapping one: its `cfg` attribute."""
    # nn.Module.__getattr__ is typed Tensor | Module; every network (and wrapper) facegan builds keeps
    # its ModelConfig as a plain attribute `cfg`.
    return cast(ModelConfig, g.cfg)


def unwrap_inference(module: nn.Module) -> nn.Module:
    """The generator inside an inference wrapper (its weights are what gets exported); any other
    module itself."""
    return module.g if isinstance(module, InferenceGenerator) else module


def for_inference(g: nn.Module, device: torch.device, amp: str) -> nn.Module:
    """`g` with the inference speed settings `amp` (auto | off | bf16 | fp16) resolves to on `device`;
    "off" returns `g` itself: the plain fp32 path, pixel for pixel as before."""
    if amp == "off":
        return g
    perf = resolve(PerfConfig(amp=cast(AmpMode, amp)), device)  # a str from a caller: PerfConfig checks it
    return InferenceGenerator(g, perf) if perf.amp_dtype or perf.channels_last else g
