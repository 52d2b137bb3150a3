"""Where a figure was measured (device, versions, load), the peak FLOP/s it is compared with, and the
progress log and device sync every module uses."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facegan.runtime.perf import Perf

# Dense datasheet peaks in TFLOP/s as (bf16 tensor core, tf32 tensor core, fp32 CUDA core), matched
# against torch.cuda.get_device_name() in order (the first matching key wins).
CUDA_PEAKS: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("H100 PCIe", (756.0, 378.0, 51.2)),
    ("H100 NVL", (835.0, 418.0, 60.0)),
    ("H200 NVL", (835.0, 418.0, 60.0)),
    ("H100", (989.4, 494.7, 66.9)),  # SXM5 ("NVIDIA H100 80GB HBM3")
    ("H200", (989.4, 494.7, 66.9)),  # same GH100 compute as the H100 SXM, more/faster memory
    ("A100", (312.0, 156.0, 19.5)),
)


def log(msg: str) -> None:
    """Progress goes to stderr so stdout holds only the report."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sync(device: torch.device) -> None:
    """Wait for queued device work; CPU ops are synchronous already."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class CpuInfo:
    model: str
    vendor: str
    family: int | None
    flags: frozenset[str]
    mhz: float | None
    mhz_source: str
    cores: int


def cpu_info() -> CpuInfo:
    """The CPU as the OS reports it (first processor block of /proc/cpuinfo; lscpu for the max clock)."""
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError):
        block = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
        for line in block.splitlines():
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    mhz, source = None, "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("CPU max MHz:"):
                mhz, source = float(line.split(":")[1]), "lscpu 'CPU max MHz'"
    if mhz is None and "cpu MHz" in fields:
        # In VMs only the nominal clock is visible; boost clocks may be higher than this.
        mhz, source = float(fields["cpu MHz"]), "/proc/cpuinfo 'cpu MHz'"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    family = int(fields["cpu family"]) if fields.get("cpu family", "").isdigit() else None
    return CpuInfo(
        model=fields.get("model name") or platform.processor() or "unknown",
        vendor=fields.get("vendor_id", ""),
        family=family,
        flags=frozenset(fields.get("flags", "").split()),
        mhz=mhz,
        mhz_source=source,
        cores=cores,
    )


def cpu_peak(info: CpuInfo) -> tuple[float | None, str]:
    """fp32 FMA peak in FLOP/s (cores × clock × FLOP/cycle/core) and how it was derived."""
    if info.mhz is None:
        return None, "clock unknown: no peak"
    f = info.flags
    if "avx512f" in f and not (info.vendor == "AuthenticAMD" and info.family == 25):
        per_cycle, why = 64, "AVX-512: 2 FMA pipes × 16 fp32 lanes × 2 FLOP"
    elif "avx512f" in f:  # Zen 4 (family 25) executes 512-bit ops on 256-bit pipes
        per_cycle, why = 32, "AVX-512 on Zen 4 (256-bit pipes): 2 × 8 fp32 lanes × 2 FLOP"
    elif "avx2" in f and "fma" in f:
        per_cycle, why = 32, "AVX2+FMA: 2 FMA pipes × 8 fp32 lanes × 2 FLOP"
    else:
        per_cycle, why = 8, "SSE: 4 fp32 lanes × (1 mul + 1 add)"
    peak = info.cores * info.mhz * 1e6 * per_cycle
    text = (
        f"{info.cores} cores × {info.mhz / 1000:.2f} GHz ({info.mhz_source}) × {per_cycle} FLOP/cycle "
        f"({why}) = {peak / 1e9:.0f} GFLOP/s fp32"
    )
    return peak, text


def cuda_peak(name: str, precision: str) -> float | None:
    """Dense datasheet peak for `precision` ('bf16' | 'fp16' | 'tf32' | 'fp32') on a known GPU."""
    for key, (bf16, tf32, fp32) in CUDA_PEAKS:
        if key in name:
            return 1e12 * {"bf16": bf16, "fp16": bf16, "tf32": tf32, "fp32": fp32}[precision]
    return None


def precision_of(perf: Perf | None, device: torch.device) -> str:
    """The arithmetic the convs actually run in: fp32 convs on CUDA use TF32 unless it is disabled."""
    if perf is not None and perf.amp_dtype is not None:
        return {torch.bfloat16: "bf16", torch.float16: "fp16"}[perf.amp_dtype]
    if device.type == "cuda" and torch.backends.cudnn.allow_tf32:
        return "tf32"
    return "fp32"


def cpu_bf16_peak(info: CpuInfo, fp32_peak: float | None) -> tuple[float | None, str]:
    """Peak for bf16 autocast rows on the CPU, and why.

    AVX512-BF16's dot-product instruction does two bf16 multiply-adds per fp32 lane, so oneDNN's bf16
    convolutions can reach twice the fp32 FMA rate; without it bf16 is widened to fp32 and the fp32
    peak applies. AMX tiles are far faster and not modelled here.
    """
    if fp32_peak is None:
        return None, "clock unknown: no peak"
    if "amx_bf16" in info.flags:
        return None, "AMX-BF16 present: bf16 peak not modelled (n/a)"
    if "avx512_bf16" in info.flags:
        return 2 * fp32_peak, f"AVX512-BF16 dot products: 2 × fp32 = {2 * fp32_peak / 1e9:.0f} GFLOP/s bf16"
    return fp32_peak, "no native bf16 arithmetic: bf16 peak = fp32 peak"


def row_peak(device: torch.device, precision: str, env: dict[str, Any]) -> float | None:
    """Peak the row is compared against: by GPU model and precision, or the CPU's fp32/bf16 peak."""
    if device.type == "cuda":
        return cuda_peak(torch.cuda.get_device_name(device), precision)
    return env["cpu_bf16_peak_flops"] if precision == "bf16" else env["cpu_peak_flops"]


def environment(device: torch.device, argv: Sequence[str]) -> dict[str, Any]:
    """Everything a figure needs next to it: date, device, versions, load and the command."""
    import PIL
    import torchvision

    info = cpu_info()
    peak, derivation = cpu_peak(info)
    bf16_peak, bf16_derivation = cpu_bf16_peak(info, peak)
    env: dict[str, Any] = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cpu_model": info.model,
        "cpu_family": info.family,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cores": info.cores,
        "torch_threads": torch.get_num_threads(),
        "cpu_peak_flops": peak,
        "cpu_peak_derivation": derivation,
        "cpu_bf16_peak_flops": bf16_peak,
        "cpu_bf16_peak_derivation": bf16_derivation,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "loadavg_start": os.getloadavg(),
        "command": shlex.join([Path(sys.executable).name, "bench/throughput.py", *argv]),
    }
    return env
