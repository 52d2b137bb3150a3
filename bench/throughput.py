"""Training throughput of facegan against the reference DCGAN recipe, in one run.

Work unit: one full training step of the seed DCGAN-64 at batch 128 — D on a real and a fake batch,
D's update, then G's update through the freshly updated D — i.e. what the PyTorch DCGAN example and the
seed write-ups do per batch. Rows:

  a            the reference recipe, re-implemented here: JPEGs decoded by PIL in a DataLoader with
               2 workers, Resize+CenterCrop+ToTensor+Normalize, Sigmoid + BCELoss, fp32 eager
  b            facegan with default settings (what `facegan train` does per step, from the packed set)
  f            facegan with default settings but exact fp32 (`--amp off`), where the default differs
  c            facegan with its fastest settings for the device (candidates screened, best kept)
  gen-default  generator-only inference, default settings
  gen-fastest  generator-only inference, fastest settings (screened separately: inference ≠ training)

All rows read the same images: the source is packed once with `facegan.data.prepare`, and exactly the
files it kept are staged (extracted from the zip, or linked) as an ImageFolder for the reference.
Warm-up (worker start, oneDNN primitive creation, torch.compile) is excluded; each row reports the
median and range of several timed windows, with a device sync at every window end. The windows of
rows a, b, c (and of the two gen rows) run in interleaved rounds, so a load change on a shared machine
hits every row alike.

    python bench/throughput.py                        # CelebA zip next to the repo, device auto
    python bench/throughput.py --data synthetic:6000  # no download needed
    python bench/throughput.py --help
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import io
import json
import math
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # runnable as `python bench/throughput.py` without installing facegan
    sys.path.insert(0, str(REPO_ROOT))

from facegan.config import ModelConfig, OptimConfig, PerfConfig  # noqa: E402
from facegan.data import BatchSource, PackedDataset, prepare  # noqa: E402
from facegan.errors import FaceganError  # noqa: E402
from facegan.models import build_models  # noqa: E402
from facegan.perf import Perf, make_optimizers, make_scaler, prepare_models, resolve  # noqa: E402
from facegan.step import StepStats, sample_latent, train_step  # noqa: E402

DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "img_align_celeba.zip"
FULL_CELEBA = 202_599  # images in the official img_align_celeba
ROWS = ("a", "b", "f", "c", "gen")
SYNTH_W, SYNTH_H = 89, 109  # the shared CelebA copy's size (official aligned CelebA halved)

# Candidate speed settings screened for row c (and, without the optimizer fields, for gen-fastest).
# Each is a PerfConfig; every one keeps the seed recipe's semantics (see facegan/perf.py).
CPU_CANDIDATES = (
    "amp=off,channels_last=off,fused_adam=off",
    "amp=off,channels_last=on,fused_adam=off",
    "amp=off,channels_last=on,fused_adam=on",
    "amp=bf16,channels_last=off,fused_adam=off",
    "amp=bf16,channels_last=on,fused_adam=on",
    "amp=off,channels_last=on,fused_adam=on,compile=default",
    "amp=bf16,channels_last=on,fused_adam=on,compile=default",
)
CUDA_CANDIDATES = (
    "amp=bf16,channels_last=on,fused_adam=on,resident=on",
    "amp=bf16,channels_last=on,fused_adam=on,resident=on,compile=default",
    "amp=bf16,channels_last=on,fused_adam=on,resident=on,compile=max-autotune",
    "amp=bf16,channels_last=on,fused_adam=on,resident=on,compile=reduce-overhead",
)

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


# ----------------------------------------------------------------------------- environment and peaks


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
    return CpuInfo(model=fields.get("model name") or platform.processor() or "unknown",
                   vendor=fields.get("vendor_id", ""), family=family,
                   flags=frozenset(fields.get("flags", "").split()), mhz=mhz, mhz_source=source, cores=cores)


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
    text = (f"{info.cores} cores × {info.mhz / 1000:.2f} GHz ({info.mhz_source}) × {per_cycle} FLOP/cycle "
            f"({why}) = {peak / 1e9:.0f} GFLOP/s fp32")
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


# ----------------------------------------------------------------------------- data staging


@dataclass
class Staged:
    """The same images in both forms: facegan's packed array and the reference's ImageFolder."""

    description: str
    packed: Path
    image_root: Path  # ImageFolder root: one class folder holding the kept JPEGs
    count: int
    prepare_s: float


def make_synthetic_jpegs(root: Path, n: int) -> Path:
    """`n` procedurally drawn faces as JPEGs in CelebA's layout (`img_align_celeba/000001.jpg`)."""
    from PIL import Image

    from facegan.synthetic import synthetic_face

    folder = root / "img_align_celeba"
    folder.mkdir(parents=True)
    left = (SYNTH_H - SYNTH_W) // 2
    for i in range(n):
        face = synthetic_face(i, SYNTH_H)[:, left:left + SYNTH_W]  # (109, 89, 3): portrait like CelebA
        Image.fromarray(face).save(folder / f"{i + 1:06d}.jpg", quality=95)
    return root


def stage_data(data: str, size: int, tmp: Path) -> Staged:
    """Pack `data` for facegan, then stage exactly the files it kept for the reference's ImageFolder."""
    if data.startswith("synthetic:"):
        n = int(data.split(":", 1)[1])
        log(f"drawing {n} synthetic {SYNTH_W}×{SYNTH_H} JPEGs")
        source, description = str(make_synthetic_jpegs(tmp / "synthetic", n)), f"{n} synthetic JPEGs"
    else:
        source, description = data, str(Path(data).resolve())
    log(f"packing {source} at {size}px with facegan.data.prepare (outside timing)")
    t0 = time.perf_counter()
    prepared = prepare(source, tmp / "packed", size, quiet=True)
    prepare_s = time.perf_counter() - t0
    kept: list[str] = PackedDataset(prepared.out).manifest["files"]

    # ImageFolder wants root/<class>/<image>; names are flattened so nested sources work too.
    image_dir = tmp / "reference" / "images"
    image_dir.mkdir(parents=True)
    if Path(source).is_dir():
        for name in kept:  # links, not copies: the reference reads the very same files
            (image_dir / name.replace("/", "__")).symlink_to(Path(source).resolve() / name)
    else:
        with zipfile.ZipFile(source) as zf:
            for name in kept:
                (image_dir / name.replace("/", "__")).write_bytes(zf.read(name))
    return Staged(description, prepared.out, image_dir.parent, prepared.count, prepare_s)


# ----------------------------------------------------------------------------- (a) the reference recipe


class RefGenerator(nn.Module):
    """The example's G: ConvT(nz→8·ngf, 4×4) then stride-2 ConvT-BN-ReLU blocks halving the width, Tanh.

    At 64 px the widths are 8, 4, 2, 1 × ngf — the PyTorch example's layer list; 32 px drops one block.
    """

    def __init__(self, nz: int, ngf: int, nc: int, size: int) -> None:
        super().__init__()
        mults = [2 ** i for i in reversed(range(int(math.log2(size)) - 2))]  # 64 px: [8, 4, 2, 1]
        layers: list[nn.Module] = [nn.ConvTranspose2d(nz, ngf * mults[0], 4, 1, 0, bias=False),
                                   nn.BatchNorm2d(ngf * mults[0]), nn.ReLU(True)]
        for m_in, m_out in pairwise(mults):
            layers += [nn.ConvTranspose2d(ngf * m_in, ngf * m_out, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(ngf * m_out), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(ngf * mults[-1], nc, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


class RefDiscriminator(nn.Module):
    """The example's D: Conv-LReLU, stride-2 Conv-BN-LReLU blocks doubling the width, Conv, Sigmoid."""

    def __init__(self, ndf: int, nc: int, size: int) -> None:
        super().__init__()
        mults = [2 ** i for i in range(int(math.log2(size)) - 2)]  # 64 px: [1, 2, 4, 8]
        layers: list[nn.Module] = [nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
        for m_in, m_out in pairwise(mults):
            layers += [nn.Conv2d(ndf * m_in, ndf * m_out, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(ndf * m_out), nn.LeakyReLU(0.2, inplace=True)]
        # The recipe ends D in a Sigmoid and trains it with BCELoss on probabilities.
        layers += [nn.Conv2d(ndf * mults[-1], 1, 4, 1, 0, bias=False), nn.Sigmoid()]
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


def ref_weights_init(m: nn.Module) -> None:
    """The recipe's init, by class name: convs ~ N(0, 0.02), BatchNorm weight ~ N(1, 0.02), bias 0."""
    name = m.__class__.__name__
    if "Conv" in name:
        nn.init.normal_(m.weight.data, 0.0, 0.02)
    elif "BatchNorm" in name:
        nn.init.normal_(m.weight.data, 1.0, 0.02)
        nn.init.constant_(m.bias.data, 0)


def reference_step(net_g: nn.Module, net_d: nn.Module, opt_g: torch.optim.Optimizer,
                   opt_d: torch.optim.Optimizer, criterion: nn.Module, real: torch.Tensor, nz: int
                   ) -> tuple[float, float, float, float, float]:
    """One iteration of the recipe's loop body; returns (Loss_D, Loss_G, D(x), D(G(z)) before, after).

    Written the way the recipe reads, including its per-step `.item()` reads (each one a device sync)
    and D's weight gradients in the G step (the recipe never freezes D there).
    """
    device = real.device
    b = real.size(0)
    # (1) Update D: maximise log(D(x)) + log(1 - D(G(z)))
    net_d.zero_grad()
    label = torch.full((b,), 1.0, dtype=torch.float, device=device)
    output = net_d(real).view(-1)
    err_d_real = criterion(output, label)
    err_d_real.backward()
    d_x = output.mean().item()

    noise = torch.randn(b, nz, 1, 1, device=device)
    fake = net_g(noise)
    label.fill_(0.0)
    output = net_d(fake.detach()).view(-1)
    err_d_fake = criterion(output, label)
    err_d_fake.backward()
    d_g_z1 = output.mean().item()
    err_d = err_d_real + err_d_fake
    opt_d.step()

    # (2) Update G: maximise log(D(G(z)))
    net_g.zero_grad()
    label.fill_(1.0)  # fake labels are real for the generator cost
    output = net_d(fake).view(-1)
    err_g = criterion(output, label)
    err_g.backward()
    d_g_z2 = output.mean().item()
    opt_g.step()
    return err_d.item(), err_g.item(), d_x, d_g_z1, d_g_z2


def reference_models(mc: ModelConfig, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """The recipe's G and D with its init, on `device`."""
    net_g = RefGenerator(mc.latent_dim, mc.ngf, mc.channels, mc.size).to(device)
    net_d = RefDiscriminator(mc.ndf, mc.channels, mc.size).to(device)
    net_g.apply(ref_weights_init)
    net_d.apply(ref_weights_init)
    return net_g, net_d


def reference_optimizers(net_g: nn.Module, net_d: nn.Module) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Adam(2e-4, β=(0.5, 0.999)) with torch's default implementation choice, as the recipe."""
    return (torch.optim.Adam(net_g.parameters(), lr=2e-4, betas=(0.5, 0.999)),
            torch.optim.Adam(net_d.parameters(), lr=2e-4, betas=(0.5, 0.999)))


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

    def __init__(self, image_root: Path, mc: ModelConfig, batch_size: int, workers: int,
                 device: torch.device) -> None:
        from torchvision import datasets, transforms

        torch.manual_seed(0)
        tf = transforms.Compose([
            transforms.Resize(mc.size),
            transforms.CenterCrop(mc.size),
            transforms.ToTensor(),
            transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        ])
        self.dataset = datasets.ImageFolder(root=str(image_root), transform=tf)
        # The recipe's loader, except that workers persist across epochs: on the full 202,599-image
        # CelebA the recipe restarts its workers once per 1,583 steps, on a 6,000-image subset once per
        # 47, so restarts would charge the reference a cost that the real dataset amortises.
        self.loader: torch.utils.data.DataLoader | None = torch.utils.data.DataLoader(
            self.dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
            persistent_workers=workers > 0)
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
        self.last = reference_step(self.net_g, self.net_d, self.opt_g, self.opt_d, self.criterion, real,
                                   self.nz)
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


class FaceganRunner(Runner):
    """Rows b and c: exactly what `facegan.loop` does per step, from a packed dataset.

    BatchSource → train_step (seed GANConfig: the defaults) → stats stacked and summed on the device;
    the sums are read back at window ends, the loop's log interval.
    """

    def __init__(self, packed: Path, perf: Perf, mc: ModelConfig, batch_size: int,
                 device: torch.device, seed: int = 0) -> None:
        self.perf, self.device = perf, device
        self.batches = BatchSource(PackedDataset(packed), batch_size, seed, device, hflip=False,
                                   resident=perf.resident, channels_last=perf.channels_last)
        g, d = build_models(mc, seed=seed)
        self.g, self.d = g.to(device), d.to(device)
        self.g_step, self.d_step = prepare_models(self.g, self.d, perf)
        self.opt_g, self.opt_d = make_optimizers(self.g, self.d, OptimConfig(), perf)
        self.scaler = make_scaler(perf, device)
        self.rng = torch.Generator(device).manual_seed(seed)
        self.g.train()
        self.d.train()
        self.images_per_step = batch_size
        self.global_step = 0
        self.sums: torch.Tensor | None = None
        self.n = 0
        self.last: dict[str, float] = {}

    def step(self) -> int:
        stats = train_step(self.g_step, self.d_step, self.opt_g, self.opt_d,
                           self.batches.batch(self.global_step), self.rng, amp_dtype=self.perf.amp_dtype,
                           scaler=self.scaler)
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
        self.g_call, _ = prepare_models(self.g, d, Perf(perf.amp_dtype, perf.channels_last,
                                                        perf.compile_mode, False, False))
        self.rng = torch.Generator(device).manual_seed(0)
        self.images_per_step = batch_size

    def step(self) -> int:
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.perf.amp_dtype,
                                                    enabled=self.perf.amp_dtype is not None):
            self.g_call(sample_latent(self.batch_size, self.latent_dim, self.rng))
        return self.batch_size

    def end_window(self) -> None:
        sync(self.device)


# ----------------------------------------------------------------------------- timing


def warm_up(runner: Runner, steps: int) -> float:
    """Untimed steps (worker start, kernel selection, compile); returns their seconds."""
    t0 = time.perf_counter()
    for _ in range(steps):
        runner.step()
    runner.end_window()
    return time.perf_counter() - t0


def time_window(runner: Runner, steps: int) -> float:
    """Images/s of one timed window of `steps` steps, ending with the runner's sync."""
    t = time.perf_counter()
    images = sum(runner.step() for _ in range(steps))
    runner.end_window()
    return images / (time.perf_counter() - t)


@dataclass
class Plan:
    """How long each kind of row runs; defaults depend on the device (see `make_plan`)."""

    windows: int
    steps: int
    gen_steps: int
    warmup: int
    warmup_compiled: int
    ref_warmup: int
    probe_windows: int
    probe_steps: int


def make_plan(args: argparse.Namespace, device: torch.device) -> Plan:
    """A CPU step of batch 128 takes seconds, so CPU windows are short; GPU windows are long."""
    cuda = device.type == "cuda"
    steps = args.steps_per_window or (100 if cuda else 2)
    return Plan(
        windows=args.windows,
        steps=steps,
        gen_steps=args.gen_steps_per_window or (100 if cuda else 8),
        warmup=args.warmup if args.warmup is not None else (20 if cuda else 1),
        # Compiled modules compile on the first call and again when D is frozen for the G step;
        # CUDA graphs record after a few more.
        warmup_compiled=args.warmup if args.warmup is not None else (30 if cuda else 2),
        ref_warmup=args.warmup if args.warmup is not None else (10 if cuda else 1),
        probe_windows=args.probe_windows or 2,
        probe_steps=args.probe_steps or (50 if cuda else 1),
    )


# ----------------------------------------------------------------------------- rows


@dataclass
class Row:
    """One line of the table: what ran, its per-window images/s, and what to divide them by."""

    key: str
    label: str
    settings: str
    precision: str
    rates: list[float] = field(default_factory=list)
    warmup_s: float | None = None
    gflop_per_img: float | None = None
    peak_flops: float | None = None
    losses: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def median(self) -> float | None:
        """Median images/s, None when the row failed."""
        return statistics.median(self.rates) if self.rates else None

    @property
    def achieved_flops(self) -> float | None:
        """Counted FLOPs per image × median images/s."""
        if self.median is None or self.gflop_per_img is None:
            return None
        return self.median * self.gflop_per_img * 1e9

    @property
    def pct_peak(self) -> float | None:
        """Achieved FLOP/s as a percentage of the row's peak (None when the peak is unknown)."""
        if self.achieved_flops is None or not self.peak_flops:
            return None
        return 100.0 * self.achieved_flops / self.peak_flops


def paired_ratio(row: Row, ref: Row | None) -> float | None:
    """Median over rounds of row/ref images/s: windows ran in the same round, under the same load."""
    if ref is None or row is ref or row.key.startswith("gen"):
        return None
    if not row.rates or len(row.rates) != len(ref.rates):
        return None
    return statistics.median(x / y for x, y in zip(row.rates, ref.rates))


def parse_candidate(spec: str) -> PerfConfig:
    """'amp=bf16,channels_last=on,...' → PerfConfig (validated by facegan)."""
    pairs = [p.split("=", 1) for p in spec.split(",") if p.strip()]
    if any(len(p) != 2 for p in pairs):
        raise FaceganError(f"bad --candidate {spec!r}: expected key=value pairs separated by commas")
    try:
        return PerfConfig(**{k.strip().replace("-", "_"): v.strip() for k, v in pairs})
    except TypeError as err:
        raise FaceganError(f"bad --candidate {spec!r}: {err}") from None


def describe(perf: Perf, training: bool = True) -> str:
    """Short settings string, e.g. 'channels_last, fused Adam, memmap, eager'."""
    parts = ["channels_last" if perf.channels_last else "NCHW"]
    if training:
        parts += ["fused Adam" if perf.fused_adam else "foreach Adam",
                  "resident" if perf.resident else "memmap"]
    parts.append(f"compile={perf.compile_mode}" if perf.compile_mode else "eager")
    return ", ".join(parts)


def short_error(err: BaseException) -> str:
    """'Type: first line' of an exception, for the report."""
    first = (str(err).strip().splitlines() or [""])[0]
    return f"{type(err).__name__}: {first[:200]}"


@dataclass
class Live:
    """A row whose runner is built and warmed up, waiting for its timed windows."""

    row: Row
    runner: Runner
    steps: int


def start_row(row: Row, build: Callable[[], Runner], warmup: int, steps: int) -> Live | None:
    """Build and warm up one row; a failure is recorded on the row instead of ending the bench."""
    try:
        runner = build()
        row.warmup_s = warm_up(runner, warmup)
        return Live(row, runner, steps)
    except Exception as err:  # a bench run reports a broken configuration instead of dying on it
        row.error = short_error(err)
        log(f"row {row.key} FAILED: {row.error}")
        return None


def interleave(live: Sequence[Live], windows: int) -> None:
    """Time the rows' windows in rounds (a, b, c, a, b, c, ...), then release the runners.

    On a shared machine the load drifts over minutes; round-robin windows expose every row to the same
    drift, so the ratios between rows stay meaningful where back-to-back rows would not. (The
    reference's DataLoader workers keep their prefetch queue full between its windows, so its windows
    start with decoded batches ready: a small bias in the reference's favour.)
    """
    for _ in range(windows):
        for entry in live:
            if entry.row.error:
                continue
            try:
                entry.row.rates.append(time_window(entry.runner, entry.steps))
            except Exception as err:  # e.g. a CUDA-graph failure after warm-up: report, go on
                entry.row.error = short_error(err)
                log(f"row {entry.row.key} FAILED: {entry.row.error}")
    for entry in live:
        if isinstance(entry.runner, (ReferenceRunner, FaceganRunner)):
            entry.row.losses = entry.runner.losses()
        if not entry.row.error:
            rates = ", ".join(f"{r:,.1f}" for r in entry.row.rates)
            log(f"row {entry.row.key}: {entry.row.median:,.1f} img/s (windows {rates})")
        entry.runner.close()
    gc.collect()


@dataclass
class Probe:
    """One candidate while screening: its settings, record, warmed-up runner and probe rates."""

    perf: Perf
    rec: dict[str, Any]
    runner: Runner | None
    rates: list[float] = field(default_factory=list)

    def time(self, steps: int) -> None:
        """One probe window; a failure closes the runner and is recorded."""
        assert self.runner is not None
        try:
            self.rates.append(time_window(self.runner, steps))
        except Exception as err:  # e.g. a CUDA-graph failure after warm-up: report, go on
            self.fail(err)

    def fail(self, err: Exception) -> None:
        self.rec["error"] = short_error(err)
        log(f"  candidate {self.rec['candidate']} FAILED: {self.rec['error']}")
        self.rates = []
        if self.runner is not None:
            self.runner.close()
        self.runner = None


def search_fastest(specs: Sequence[str], build: Callable[[Perf], Runner], device: torch.device,
                   plan: Plan, steps: int, training: bool, interleaved: bool | None = None
                   ) -> tuple[Perf | None, Runner | None, float, list[dict[str, Any]]]:
    """Screen candidate settings with short probes; keep the fastest one's warmed-up runner alive.

    Returns (best perf, its runner, its warm-up seconds, one record per candidate). Keeping the winner
    alive means a compiled winner is not compiled twice. On the CPU all candidates stay alive and the
    probe windows run in rounds, so a load change on a shared machine cannot decide the ranking; on a
    GPU each candidate is probed right after its warm-up and dropped unless it leads (several
    CUDA-graph-compiled models alive at once would share, and keep re-recording, one graph tree).
    """
    interleaved = device.type != "cuda" if interleaved is None else interleaved
    seen: set[tuple[Any, ...]] = set()
    probes: list[Probe] = []
    best: Probe | None = None
    for spec in specs:
        perf = resolve(parse_candidate(spec), device)
        key = (perf.amp_dtype, perf.channels_last, perf.compile_mode) + (
            (perf.fused_adam, perf.resident) if training else ())
        if key in seen:  # e.g. fused_adam is irrelevant for inference
            continue
        seen.add(key)
        probe = Probe(perf, {"candidate": spec, "precision": precision_of(perf, device),
                             "settings": describe(perf, training)}, None)
        probes.append(probe)
        try:
            probe.runner = build(perf)
            probe.rec["warmup_s"] = warm_up(probe.runner, plan.warmup_compiled if perf.compile_mode
                                            else plan.warmup)
        except Exception as err:  # e.g. a compile mode this torch/device cannot do: report, go on
            probe.fail(err)
            continue
        if interleaved:
            continue
        for _ in range(plan.probe_windows):
            if probe.runner is not None:
                probe.time(steps)
        if probe.rates and (best is None or statistics.median(probe.rates) > statistics.median(best.rates)):
            if best is not None and best.runner is not None:
                best.runner.close()
                best.runner = None
            best = probe
        elif probe.runner is not None:
            probe.runner.close()
            probe.runner = None
        gc.collect()
    if interleaved:
        for _ in range(plan.probe_windows):
            for probe in probes:
                if probe.runner is not None:
                    probe.time(steps)
        done = [p for p in probes if p.rates]
        best = max(done, key=lambda p: statistics.median(p.rates)) if done else None
        for probe in probes:
            if probe is not best and probe.runner is not None:
                probe.runner.close()
                probe.runner = None
        gc.collect()
    for probe in probes:
        if probe.rates:
            probe.rec["probe_img_s"] = statistics.median(probe.rates)
            log(f"  candidate {probe.rec['candidate']}: {probe.rec['probe_img_s']:,.1f} img/s "
                f"(probe windows {', '.join(f'{r:,.1f}' for r in probe.rates)}; "
                f"warm-up {probe.rec['warmup_s']:.1f} s)")
    records = [p.rec for p in probes]
    if best is None or best.runner is None:
        return None, None, 0.0, records
    return best.perf, best.runner, best.rec["warmup_s"], records


# ----------------------------------------------------------------------------- FLOPs


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
    g, d = build_models(mc)
    fopt_g, fopt_d = make_optimizers(g, d, OptimConfig())
    rng = torch.Generator().manual_seed(0)
    ours = count_flops(lambda: train_step(g, d, fopt_g, fopt_d, real, rng))
    g.eval()
    with torch.inference_mode():
        gen = count_flops(lambda: g(sample_latent(batch, mc.latent_dim, rng)))
    return {"reference_step": ref / batch / 1e9, "facegan_step": ours / batch / 1e9,
            "g_forward": gen / batch / 1e9}


# ----------------------------------------------------------------------------- memory


def proc_memory() -> dict[str, int]:
    """Current and peak resident set in bytes (Linux /proc; ru_maxrss elsewhere)."""
    import resource

    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(value.split()[0]) * 1024
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out["ru_maxrss"] = maxrss if sys.platform == "darwin" else maxrss * 1024  # bytes on macOS, KiB on Linux
    return out


def memory_child(spec: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: RSS after imports, after building and warming the models, and after training.

    The warm-up step runs on an in-memory random batch so the allocator, oneDNN caches and Adam state
    are all in the "model" baseline before the packed dataset is touched. Then `train_steps` real steps
    run from the packed set and (where training the whole epoch would take too long, i.e. on CPU) the
    rest of the epoch's batches are drawn through the same data path, so every page of the memory map
    has been read once: the worst case of a full epoch.
    """
    mem: dict[str, Any] = {"import": proc_memory()}
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    mc = ModelConfig(**spec["model"])
    perf = resolve(PerfConfig(), device)
    g, d = build_models(mc)
    g, d = g.to(device), d.to(device)
    g_step, d_step = prepare_models(g, d, perf)
    opt_g, opt_d = make_optimizers(g, d, OptimConfig(), perf)
    rng = torch.Generator(device).manual_seed(0)
    bs = spec["batch_size"]
    warm = torch.rand(bs, mc.channels, mc.size, mc.size, device=device) * 2 - 1
    if perf.channels_last:
        warm = warm.contiguous(memory_format=torch.channels_last)
    scaler = make_scaler(perf, device)
    train_step(g_step, d_step, opt_g, opt_d, warm, rng, amp_dtype=perf.amp_dtype, scaler=scaler)
    del warm
    sync(device)
    mem["model"] = proc_memory()

    t0 = time.perf_counter()
    ds = PackedDataset(spec["packed"])
    batches = BatchSource(ds, bs, 0, device, resident=perf.resident, channels_last=perf.channels_last)
    epoch = batches.steps_per_epoch
    train_steps = min(spec["train_steps"] or epoch, epoch)
    for s in range(train_steps):
        train_step(g_step, d_step, opt_g, opt_d, batches.batch(s), rng, amp_dtype=perf.amp_dtype,
                   scaler=scaler)
    for s in range(train_steps, epoch):
        batches.batch(s)
    sync(device)
    mem["end"] = proc_memory()
    return {"array_bytes": int(ds.images.nbytes), "images": len(ds), "train_steps": train_steps,
            "data_only_batches": epoch - train_steps, "seconds": time.perf_counter() - t0, "rss": mem,
            "resident": perf.resident}


def make_tiled_dataset(src: Path, out: Path, count: int) -> Path:
    """A packed dataset of `count` images made by repeating `src`'s array (memory behaviour only).

    The memory claim is about a full-size dataset (CelebA: 202,599 images, 2.49 GB at 64²); a memory
    map's RSS depends on the pages read, not on their content, so a tiled copy measures it faithfully.
    """
    ds = PackedDataset(src)
    per = int(np.prod(ds.images.shape[1:]))
    out.mkdir(parents=True)
    with open(out / "images.u8", "wb") as fh:
        left = count
        while left > 0:
            n = min(left, len(ds))
            fh.write(np.asarray(ds.images[:n]).tobytes())
            left -= n
    manifest = {**ds.manifest, "count": count, "shape": [count, *ds.images.shape[1:]], "files": [],
                "source": f"{ds.manifest['source']} tiled to {count} images (bench only)",
                "content_hash": f"tiled:{ds.content_hash}"}
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert (out / "images.u8").stat().st_size == count * per
    return out


def run_memory(packed: Path, label: str, device: torch.device, mc: ModelConfig, batch_size: int,
               train_steps: int, threads: int | None = None) -> dict[str, Any]:
    """Run `memory_child` in a fresh interpreter (so earlier rows' memory is not in its peak)."""
    spec = {"packed": str(packed), "device": str(device), "model": asdict(mc), "batch_size": batch_size,
            "train_steps": train_steps, "threads": threads}
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--memory-child", json.dumps(spec)],
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"label": label, "error": f"memory child exited {proc.returncode}: {tail}"}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    rss, arr = res["rss"], res["array_bytes"]
    peak = rss["end"]["ru_maxrss"]
    model_peak = rss["model"]["ru_maxrss"]
    res.update(label=label, peak_rss=peak, peak_over_array=peak / arr,
               delta_over_array=(peak - model_peak) / arr,
               anon_growth=rss["end"].get("RssAnon", 0) - rss["model"].get("RssAnon", 0),
               file_growth=rss["end"].get("RssFile", 0) - rss["model"].get("RssFile", 0))
    return res


# ----------------------------------------------------------------------------- profile


def profile_steps(staged: Staged, mc: ModelConfig, batch_size: int, device: torch.device,
                  limit: int = 14) -> dict[str, str]:
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


# ----------------------------------------------------------------------------- report


def fmt_rate(x: float | None) -> str:
    """Images/s with thousands separators; one decimal below 100."""
    return "—" if x is None else (f"{x:,.0f}" if x >= 100 else f"{x:,.1f}")


def fmt_flops(x: float | None, device: torch.device) -> str:
    """Achieved FLOP/s in the table's unit: TFLOP/s on GPUs, GFLOP/s on CPUs."""
    if x is None:
        return "—"
    return f"{x / 1e12:,.1f}" if device.type == "cuda" else f"{x / 1e9:,.1f}"


def render(results: dict[str, Any], rows: list[Row], device: torch.device) -> str:
    """The report: environment header, the table, candidates, targets and memory."""
    env = results["env"]
    out = io.StringIO()
    w = out.write
    w("facegan throughput benchmark\n")
    w(f"  date        {env['date']}\n")
    cuda = f" (CUDA {env['cuda']}, cuDNN {env['cudnn']})" if env["cuda"] else ""
    w(f"  device      {env['device']}{cuda}\n")
    w(f"  cpu         {env['cpu_model']} (family {env['cpu_family']}), {env['cores']} cores available, "
      f"torch threads {env['torch_threads']}, kernels {env['cpu_capability']}\n")
    w(f"  versions    python {env['python']}, torch {env['torch']}, torchvision {env['torchvision']}, "
      f"numpy {env['numpy']}, pillow {env['pillow']}\n")
    la0, la1 = env["loadavg_start"], env.get("loadavg_end", ("?",) * 3)
    w(f"  load avg    start {la0[0]:.2f} {la0[1]:.2f} {la0[2]:.2f}; end "
      + " ".join(f"{x:.2f}" if isinstance(x, float) else str(x) for x in la1) + "\n")
    w(f"  data        {results['data']['description']}: {results['data']['images']} images "
      f"(packed in {results['data']['prepare_s']:.1f} s, outside timing)\n")
    mc = results["model"]
    w(f"  work unit   one training step of DCGAN-{mc['size']} (nz {mc['latent_dim']}, ngf {mc['ngf']}, "
      f"ndf {mc['ndf']}), batch {results['batch_size']}; {results['plan']['windows']} windows × "
      f"{results['plan']['steps']} steps (gen: × {results['plan']['gen_steps']} batches of "
      f"{results['gen_batch']}), medians\n")
    fl = results["flops"]
    w(f"  FLOPs       reference step {fl['reference_step']:.3f} GFLOP/img, facegan step "
      f"{fl['facegan_step']:.3f} GFLOP/img (D frozen in the G step), G forward {fl['g_forward']:.3f}\n")
    if device.type == "cpu":
        w(f"  peak        {env['cpu_peak_derivation']}\n")
        w(f"              {env['cpu_bf16_peak_derivation']} (the peak of bf16 rows)\n")
    w(f"  command     {env['command']}\n\n")

    a = next((r for r in rows if r.key == "a" and r.median), None)
    unit = "TFLOP/s" if device.type == "cuda" else "GFLOP/s"
    head = (f"{'row':<12} {'img/s':>9} {'(min–max)':>19} {'× a':>6} {'GFLOP/img':>9} {unit:>9} "
            f"{'% peak':>7} {'precision':>9}  settings")
    w(head + "\n" + "-" * len(head) + "\n")
    for r in rows:
        if r.error:
            w(f"{r.key:<12} FAILED: {r.error}\n")
            continue
        rng = f"({fmt_rate(min(r.rates))}–{fmt_rate(max(r.rates))})"
        ratio = f"{r.median / a.median:.2f}" if a and r.median and not r.key.startswith("gen") else "—"
        pct = "n/a" if r.pct_peak is None else f"{r.pct_peak:.1f}%"
        ach = fmt_flops(r.achieved_flops, device)
        w(f"{r.key:<12} {fmt_rate(r.median):>9} {rng:>19} {ratio:>6} {r.gflop_per_img:>9.3f} {ach:>9} "
          f"{pct:>7} {r.precision:>9}  {r.label}: {r.settings}\n")
    for r in rows:
        if r.warmup_s is not None and "compile" in r.settings and "eager" not in r.settings:
            w(f"  {r.key}: warm-up incl. torch.compile {r.warmup_s:.1f} s (excluded)\n")

    for title, key in (("row c candidates (training)", "c_candidates"),
                       ("gen-fastest candidates (inference)", "gen_candidates")):
        if results.get(key):
            w(f"\n{title}, probe of {results['plan']['probe_windows']} window(s):\n")
            for rec in results[key]:
                res = (f"FAILED {rec['error']}" if "error" in rec else
                       f"{fmt_rate(rec['probe_img_s'])} img/s, warm-up {rec['warmup_s']:.1f} s")
                w(f"  {rec['precision']:>5} {rec['settings']:<58} {res}\n")

    w("\ntargets:\n")
    by = {r.key: r for r in rows if r.median}
    if "a" in by and device.type == "cpu":
        # Targets on a bf16-capable CPU (issue J): default ≥ 2×, fastest ≥ 2.5× the reference.
        for k, name, goal in (("f", "fp32", None), ("b", "default", 2.0), ("c", "fastest", 2.5)):
            if k not in by:
                continue
            ratio = by[k].median / by["a"].median
            paired = paired_ratio(by[k], by["a"])
            paired_s = "n/a" if paired is None else f"{paired:.2f}×"
            verdict = "met" if goal and ratio >= goal else f"MISSED by {(goal - ratio) / goal * 100:.0f}%" \
                if goal else ""
            target = f"; target ≥ {goal}×: {verdict}" if goal else ""
            w(f"  CPU: facegan {name} / reference = {ratio:.2f}× (median of per-round ratios "
              f"{paired_s}{target})\n")
    if device.type == "cuda":
        for k in ("b", "c"):
            if k in by:
                ips = by[k].median
                w(f"  {k}: {ips:,.0f} img/s (target ≥ 50,000: {'met' if ips >= 50_000 else 'MISSED'}); "
                  f"202,599-image epoch {FULL_CELEBA / ips:.1f} s (target ≤ 4 s: "
                  f"{'met' if FULL_CELEBA / ips <= 4 else 'MISSED'})")
                if "a" in by:
                    ratio = ips / by["a"].median
                    w(f"; {ratio:.1f}× reference (target ≥ 25×: {'met' if ratio >= 25 else 'MISSED'})")
                w("\n")
    for k in ("b", "c"):
        if k in by:
            w(f"  {k}: a {FULL_CELEBA:,}-image CelebA epoch would take {FULL_CELEBA / by[k].median:,.1f} s\n")

    for mem in results.get("memory", []):
        if "error" in mem:
            w(f"\nmemory ({mem['label']}): FAILED {mem['error']}\n")
            continue
        rss = mem["rss"]
        mb = 1e6
        w(f"\nmemory, {mem['label']}: packed array {mem['array_bytes'] / mb:,.1f} MB "
          f"({mem['images']:,} images); {mem['train_steps']} training steps + {mem['data_only_batches']} "
          f"data-only batches ({'device-resident' if mem['resident'] else 'memory map'})\n")
        w(f"  RSS after imports {rss['import']['VmRSS'] / mb:,.0f} MB; peak after model + 1 warm step "
          f"{rss['model']['ru_maxrss'] / mb:,.0f} MB; peak while training {mem['peak_rss'] / mb:,.0f} MB\n")
        w(f"  peak / array = {mem['peak_over_array']:.2f}×; (peak − model peak) / array = "
          f"{mem['delta_over_array']:.2f}× (target < 1.5×); growth: anonymous "
          f"{mem['anon_growth'] / mb:+,.1f} MB, "
          f"file-backed (the memory map) {mem['file_growth'] / mb:+,.1f} MB\n")
    for name, table in results.get("profile", {}).items():
        w(f"\nprofile of one step, {name}:\n{table}\n")
    return out.getvalue()


# ----------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    """The command line (see the module docstring for examples)."""
    p = argparse.ArgumentParser(
        prog="bench/throughput.py",
        description="Images/s of full DCGAN training steps: the reference recipe vs facegan (default and "
                    "fastest settings), plus generator-only inference, FLOPs, % of peak and host memory.")
    p.add_argument("--data", help=f"zip or folder of JPEGs, or synthetic:N (default: {DEFAULT_DATA} if it "
                                  f"exists)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--windows", type=int, default=5, help="timed windows per row (median reported)")
    p.add_argument("--steps-per-window", type=int, help="training steps per window (CPU 2, CUDA 100)")
    p.add_argument("--gen-steps-per-window", type=int, help="generator batches per window (CPU 8, CUDA 100)")
    p.add_argument("--gen-batch", type=int, help="generator inference batch (CPU 128, CUDA 512)")
    p.add_argument("--warmup", type=int, help="untimed steps before each row (CPU 1-2, CUDA 10-30)")
    p.add_argument("--probe-windows", type=int, help="windows per candidate when screening (default 2)")
    p.add_argument("--probe-steps", type=int, help="training steps per probe window (CPU 1, CUDA 50)")
    p.add_argument("--only", default="a,b,f,c,gen", help="rows to run, from a,b,f,c,gen (default all)")
    p.add_argument("--candidate", action="append", dest="candidates", metavar="SPEC",
                   help="a PerfConfig to screen for row c / gen-fastest, e.g. amp=bf16,channels_last=on; "
                        "repeatable (default: a per-device list)")
    p.add_argument("--threads", type=int,
                   help="torch intra-op threads (default: torch's choice, one per core); on a shared, "
                        "loaded machine fewer threads can stall less in OpenMP barriers")
    p.add_argument("--workers", type=int, default=2, help="reference DataLoader workers (the recipe's 2)")
    p.add_argument("--size", type=int, choices=(32, 64), default=64, help="image size (64: the seed)")
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--ndf", type=int, default=64)
    p.add_argument("--latent-dim", type=int, default=100)
    p.add_argument("--memory", choices=("on", "off"), default="on", help="measure peak host RSS")
    p.add_argument("--mem-train-steps", type=int,
                   help="training steps in the memory run (default: CPU 3 + the epoch's other batches "
                        "data-only; CUDA one full epoch)")
    p.add_argument("--mem-full-count", type=int, default=FULL_CELEBA,
                   help="also measure memory on the packed set tiled to this many images (0: skip)")
    p.add_argument("--profile", action="store_true", help="append torch.profiler tables of one step of a, b")
    p.add_argument("--json", type=Path, help="also write all results to this file")
    p.add_argument("--memory-child", help=argparse.SUPPRESS)
    return p


def resolve_device(name: str) -> torch.device:
    """auto → CUDA when available, else CPU; an explicit cuda must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise FaceganError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    return torch.device(name)


def run(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    """Run every selected row; returns the results (also rendered and printed by `main`)."""
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    if only - set(ROWS):
        raise FaceganError(f"--only takes rows from {','.join(ROWS)}, got {args.only!r}")
    mc = ModelConfig(size=args.size, latent_dim=args.latent_dim, ngf=args.ngf, ndf=args.ndf)
    plan = make_plan(args, device)
    gen_batch = args.gen_batch or (512 if device.type == "cuda" else 128)
    specs = args.candidates or (CUDA_CANDIDATES if device.type == "cuda" else CPU_CANDIDATES)
    for spec in specs:  # a typo should fail now, not after minutes of other rows
        parse_candidate(spec)
    env = environment(device, argv)
    log(f"device {env['device']}; {env['cpu_peak_derivation']}")

    rows: list[Row] = []
    results: dict[str, Any] = {"env": env, "model": asdict(mc), "batch_size": args.batch_size,
                               "gen_batch": gen_batch, "plan": asdict(plan)}
    with tempfile.TemporaryDirectory(prefix="facegan-bench-") as tmp_name:
        tmp = Path(tmp_name)
        staged = stage_data(args.data, mc.size, tmp)
        results["data"] = {"description": staged.description, "images": staged.count,
                           "prepare_s": staged.prepare_s}
        if staged.count < args.batch_size:
            raise FaceganError(f"--batch-size {args.batch_size} is larger than the data "
                               f"({staged.count} images)")
        log("counting FLOPs (FlopCounterMode, one step at batch 16 on the CPU)")
        flops = step_flops(mc)
        results["flops"] = flops

        # Same architecture check: the reference's nets must hold exactly facegan's parameters.
        ref_g, ref_d = reference_models(mc, torch.device("cpu"))
        fg_g, fg_d = build_models(mc)
        n_params = [sum(p.numel() for p in m.parameters()) for m in (ref_g, ref_d, fg_g, fg_d)]
        if n_params[:2] != n_params[2:]:
            raise AssertionError(f"reference and facegan nets differ in size: {n_params}")
        results["params"] = {"G": n_params[0], "D": n_params[1]}
        del ref_g, ref_d, fg_g, fg_d

        default = resolve(PerfConfig(), device)
        train_rows: list[Live | None] = []
        best_c: tuple[Perf, Runner, float] | None = None
        if "c" in only:  # screened first, so no other row's workers run during the probes
            log(f"row c: screening {len(specs)} candidate settings")
            best, runner, warm_s, records = search_fastest(
                specs, lambda perf: FaceganRunner(staged.packed, perf, mc, args.batch_size, device),
                device, plan, plan.probe_steps, training=True)
            results["c_candidates"] = records
            best_c = (best, runner, warm_s) if best is not None and runner is not None else None
            del runner
        if "a" in only:
            log(f"row a: reference recipe (ImageFolder + DataLoader with {args.workers} workers, fp32 eager)")
            prec = precision_of(None, device)
            row = Row("a", "reference recipe", f"PIL JPEG DataLoader ×{args.workers} workers, "
                      "Sigmoid+BCELoss, default Adam", prec, gflop_per_img=flops["reference_step"],
                      peak_flops=row_peak(device, prec, env))
            rows.append(row)
            train_rows.append(start_row(
                row, lambda: ReferenceRunner(staged.image_root, mc, args.batch_size, args.workers, device),
                plan.ref_warmup, plan.steps))
        fp32 = resolve(PerfConfig(amp="off"), device)
        facegan_rows = [("b", "facegan default", default)] if "b" in only else []
        if "f" in only and fp32 != default:  # the old CPU default (exact fp32), kept for the history
            facegan_rows.append(("f", "facegan fp32", fp32))
        for key, label, perf in facegan_rows:
            log(f"row {key}: {label} ({describe(perf)})")
            prec = precision_of(perf, device)
            row = Row(key, label, describe(perf), prec, gflop_per_img=flops["facegan_step"],
                      peak_flops=row_peak(device, prec, env))
            rows.append(row)
            train_rows.append(start_row(
                row, lambda perf=perf: FaceganRunner(staged.packed, perf, mc, args.batch_size, device),
                plan.warmup, plan.steps))
        if "c" in only:
            if best_c is None:
                rows.append(Row("c", "facegan fastest", "every candidate failed", "—",
                                error="every candidate failed (see candidates)"))
            else:
                prec = precision_of(best_c[0], device)
                row = Row("c", "facegan fastest", describe(best_c[0]), prec,
                          gflop_per_img=flops["facegan_step"],
                          peak_flops=row_peak(device, prec, env),
                          warmup_s=best_c[2])  # the candidate's own warm-up, compile included
                rows.append(row)
                train_rows.append(Live(row, best_c[1], plan.steps))
            best_c = None
        keys = ", ".join(r.row.key for r in train_rows if r)
        log(f"timing rows {keys} in {plan.windows} interleaved rounds")
        interleave([r for r in train_rows if r], plan.windows)
        del train_rows

        if "gen" in only:
            prec = precision_of(default, device)
            row = Row("gen-default", "G inference, default", describe(default, training=False)
                      + f", batch {gen_batch}", prec, gflop_per_img=flops["g_forward"],
                      peak_flops=row_peak(device, prec, env))
            log("row gen-fastest: screening inference settings")
            best, runner, warm_s, records = search_fastest(
                specs, lambda perf: GeneratorRunner(perf, mc, gen_batch, device), device, plan,
                plan.gen_steps, training=False)
            results["gen_candidates"] = records
            rows.append(row)
            gen_rows = [start_row(row, lambda: GeneratorRunner(default, mc, gen_batch, device), plan.warmup,
                                  plan.gen_steps)]
            if best is None or runner is None:
                rows.append(Row("gen-fastest", "G inference, fastest", "every candidate failed", "—",
                                error="every candidate failed (see candidates)"))
            else:
                prec = precision_of(best, device)
                row = Row("gen-fastest", "G inference, fastest",
                          describe(best, training=False) + f", batch {gen_batch}", prec,
                          gflop_per_img=flops["g_forward"], peak_flops=row_peak(device, prec, env),
                          warmup_s=warm_s)
                rows.append(row)
                gen_rows.append(Live(row, runner, plan.gen_steps))
            del runner
            log("timing rows gen-default, gen-fastest in interleaved rounds")
            interleave([r for r in gen_rows if r], plan.windows)
            del gen_rows

        if args.memory == "on":
            mem_steps = args.mem_train_steps if args.mem_train_steps is not None else (
                0 if device.type == "cuda" else 3)  # 0 = the whole epoch
            log("memory: peak RSS while training from the packed dataset (fresh process)")
            results["memory"] = [run_memory(staged.packed, f"{staged.count:,} images at {mc.size}²", device,
                                            mc, args.batch_size, mem_steps, args.threads)]
            if args.mem_full_count:
                free = shutil.disk_usage(tmp).free
                need = args.mem_full_count * 3 * mc.size * mc.size
                if need * 1.2 > free:
                    results["memory"].append({"label": "tiled", "error": f"needs {need / 1e9:.1f} GB of temp "
                                              f"disk, {free / 1e9:.1f} GB free"})
                else:
                    log(f"memory: tiling the packed set to {args.mem_full_count:,} images "
                        f"({need / 1e9:.2f} GB)")
                    tiled = make_tiled_dataset(staged.packed, tmp / "tiled", args.mem_full_count)
                    full = " (full-CelebA size)" if args.mem_full_count == FULL_CELEBA else ""
                    results["memory"].append(run_memory(
                        tiled, f"tiled to {args.mem_full_count:,} images at {mc.size}²{full}",
                        device, mc, args.batch_size, mem_steps, args.threads))
                    shutil.rmtree(tiled)
        if args.profile:
            log("profiling one step of rows a (compute only) and b")
            try:
                results["profile"] = profile_steps(staged, mc, args.batch_size, device)
            except Exception as err:  # the figures above are already measured; keep them
                results["profile"] = {"failed": short_error(err)}

    env["loadavg_end"] = os.getloadavg()
    ref = next((r for r in rows if r.key == "a" and r.median), None)
    results["rows"] = [{**asdict(r), "median": r.median, "achieved_flops": r.achieved_flops,
                        "pct_peak": r.pct_peak, "paired_ratio_to_a": paired_ratio(r, ref),
                        "ratio_to_a": (r.median / ref.median if ref and ref.median and r.median
                                       and not r.key.startswith("gen") else None)} for r in rows]
    results["report"] = render(results, rows, device)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 when rows a and b, where selected, produced figures)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.memory_child:
        print(json.dumps(memory_child(json.loads(args.memory_child))))
        return 0
    if args.data is None:
        if not DEFAULT_DATA.exists():
            parser.error(f"no --data given and {DEFAULT_DATA} does not exist; pass --data PATH (a zip or "
                         f"folder of JPEGs) or --data synthetic:N")
        args.data = str(DEFAULT_DATA)
    try:
        results = run(args, argv)
    except FaceganError as err:
        print(f"bench/throughput.py: error: {err}", file=sys.stderr)
        return 2
    print(results["report"])
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    failed = [r["key"] for r in results["rows"] if r["error"] and r["key"] in ("a", "b")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
