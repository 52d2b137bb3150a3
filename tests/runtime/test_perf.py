"""Fast paths compute the same step as the plain path (CPU, fp32 within a stated tolerance)."""

from __future__ import annotations

import copy

import pytest
import torch

from facegan.config.schema import ModelConfig, OptimConfig, PerfConfig
from facegan.errors import FaceganError
from facegan.networks.factory import build_models
from facegan.runtime import perf as perf_module
from facegan.runtime.perf import Perf, make_optimizers, make_scaler, prepare_models, resolve
from facegan.training.step import train_step

CFG = ModelConfig(size=32, latent_dim=16, ngf=8, ndf=8)
PLAIN = Perf(amp_dtype=None, channels_last=False, compile_mode=None, fused_adam=False, resident=False)
FP32_TOL = 1e-4  # fp32 reassociation differences between conv layouts / Adam kernels


def run_steps(perf: Perf, n: int = 3) -> tuple[list[torch.Tensor], list[float]]:
    g, d = build_models(CFG, seed=0)
    g_step, d_step = prepare_models(g, d, perf)
    opt_g, opt_d = make_optimizers(g, d, OptimConfig(), perf)
    scaler = make_scaler(perf, torch.device("cpu"))
    rng = torch.Generator().manual_seed(1)
    real = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    if perf.channels_last:
        real = real.contiguous(memory_format=torch.channels_last)
    losses: list[float] = []
    for _ in range(n):
        stats = train_step(g_step, d_step, opt_g, opt_d, real, rng, amp_dtype=perf.amp_dtype, scaler=scaler)
        losses += [stats.loss_d.item(), stats.loss_g.item()]
    return [t.float() for t in [*g.state_dict().values(), *d.state_dict().values()]], losses


def max_rel_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(((x - y).abs().max() / (y.abs().max() + 1e-8)).item() for x, y in zip(a, b))


def test_fused_adam_and_channels_last_match_plain_fp32() -> None:
    fast = Perf(amp_dtype=None, channels_last=True, compile_mode=None, fused_adam=True, resident=False)
    w_plain, l_plain = run_steps(PLAIN)
    w_fast, l_fast = run_steps(fast)
    assert l_fast == pytest.approx(l_plain, rel=FP32_TOL, abs=FP32_TOL)
    assert max_rel_diff(w_fast, w_plain) < FP32_TOL


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_step_tracks_fp32(dtype: torch.dtype) -> None:
    """Mixed precision computes the same objective to low-precision rounding (2%), and trains.

    Only the first D loss is compared: fp16's GradScaler may skip an overflowing first update by
    design, after which the trajectories legitimately part.
    """
    lowp = Perf(amp_dtype=dtype, channels_last=False, compile_mode=None, fused_adam=False, resident=False)
    w_plain, l_plain = run_steps(PLAIN, n=2)
    w_low, l_low = run_steps(lowp, n=2)
    assert l_low[0] == pytest.approx(l_plain[0], rel=0.02)
    assert all(torch.isfinite(w).all() for w in w_low)
    assert max_rel_diff(w_low, w_plain) > 0  # it really ran in low precision


def test_auto_settings_per_device(monkeypatch: pytest.MonkeyPatch) -> None:
    # CPU default: NHWC + fused Adam reading the memory map; bf16 only where the CPU has it natively
    for native, amp in ((True, torch.bfloat16), (False, None)):
        monkeypatch.setattr(perf_module, "cpu_has_native_bf16", lambda native=native: native)
        cpu = resolve(PerfConfig(), torch.device("cpu"))
        assert cpu == Perf(
            amp_dtype=amp, channels_last=True, compile_mode=None, fused_adam=True, resident=False
        )
    assert resolve(PerfConfig(amp="off"), torch.device("cpu")).amp_dtype is None  # exact fp32 on request
    forced = resolve(PerfConfig(amp="fp16", channels_last="on", fused_adam="on"), torch.device("cpu"))
    assert forced.amp_dtype == torch.float16 and forced.needs_scaler and forced.channels_last


def test_bad_perf_values() -> None:
    with pytest.raises(FaceganError, match="--amp must be one of"):
        PerfConfig(amp="fp8")


def test_resident_batches_equal_memmap_batches(prepared) -> None:  # type: ignore[no-untyped-def]
    from facegan.data.dataset import BatchSource, PackedDataset

    ds = PackedDataset(prepared)
    a = BatchSource(ds, 16, 0, torch.device("cpu"), hflip=True)
    b = BatchSource(ds, 16, 0, torch.device("cpu"), hflip=True, resident=True, channels_last=True)
    for step in (0, 3, 5):
        assert torch.equal(a.batch(step), b.batch(step))


def test_models_keep_plain_state_dict_keys_when_compiled() -> None:
    g, d = build_models(CFG)
    keys = list(copy.deepcopy(g.state_dict()))
    g_step, _ = prepare_models(g, d, Perf(None, False, "default", False, False))
    assert list(g.state_dict()) == keys and g_step is not g


def test_native_bf16_detection_follows_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check asks torch's CPU dispatcher (AVX512-BF16 or AMX), never a parsed /proc string."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert not perf_module.cpu_has_native_bf16()
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert perf_module.cpu_has_native_bf16()


def test_resolved_settings_round_trip_to_config() -> None:
    """What "auto" chose is recorded as explicit values that resolve to the same settings again."""
    for perf in (Perf(torch.bfloat16, True, None, True, False), Perf(None, False, "default", False, True)):
        cfg = perf.as_config("default" if perf.compile_mode else "off")
        assert "auto" not in (cfg.amp, cfg.channels_last, cfg.fused_adam, cfg.resident)
        assert resolve(cfg, torch.device("cpu")) == perf
        assert perf.precision == ("bf16" if perf.amp_dtype else "fp32") and perf.precision in perf.describe()


def test_auto_layout_on_cuda_is_nchw_under_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    """On CUDA "auto" keeps channels_last for eager steps but picks NCHW under torch.compile (inductor's
    channels_last ConvTranspose backward failed on an H200); an explicit "on" is still honoured."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    cuda = torch.device("cuda")
    assert resolve(PerfConfig(), cuda).channels_last
    for mode in ("default", "reduce-overhead", "max-autotune"):
        assert not resolve(PerfConfig(compile=mode), cuda).channels_last
    assert resolve(PerfConfig(compile="default", channels_last="on"), cuda).channels_last
    assert resolve(PerfConfig(compile="default"), torch.device("cpu")).channels_last  # CPU unchanged


class _FakeCompiled(torch.nn.Module):
    """Stands in for torch.compile's wrapper (forwards `.cfg`, keeps `_orig_mod`) on a CPU, and
    overwrites its previous output on every call, as a replayed CUDA graph's static output does."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self._orig_mod = module
        self.cfg = module.cfg
        self.static: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._orig_mod(x)
        if self.static is not None and self.static.shape == out.shape:
            with torch.no_grad():
                self.static.fill_(float("nan"))  # the previous replay's output is gone
        self.static = out
        return out


def test_cuda_graph_outputs_are_copied_out_and_step_matches_eager() -> None:
    """The step through GraphOutputs-wrapped graphs (outputs overwritten on each replay) equals the
    eager step; without the copy it reads overwritten values (NaN) and fails this test."""
    from facegan.runtime.perf import GraphOutputs

    results = []
    for wrap in (False, True):
        g, d = build_models(CFG, seed=0)
        g_call, d_call = (GraphOutputs(_FakeCompiled(g)), GraphOutputs(_FakeCompiled(d))) if wrap else (g, d)
        opt_g, opt_d = make_optimizers(g, d, OptimConfig(), PLAIN)
        real = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
        stats = train_step(g_call, d_call, opt_g, opt_d, real, torch.Generator().manual_seed(1))
        results.append(([p.detach().clone() for p in g.parameters()], [s.item() for s in stats]))
    (w_eager, s_eager), (w_graph, s_graph) = results
    assert all(torch.isfinite(torch.tensor(s_graph)))
    assert s_graph == pytest.approx(s_eager, rel=1e-5)
    assert max_rel_diff(w_graph, w_eager) < FP32_TOL
