"""One row of the GPU check, run in a child process of its own (`python -m bench.gpu_check.worker`).

A process per row gives each row its own peak-memory reading and its own compile caches in memory, and
lets the parent stop a row at its time limit without losing the others. The worker prints a
`GPUCHECK {json}` line after its warm-up and after every timed window, each holding everything measured
so far, so a row stopped at its limit still reports its finished windows.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import torch

from bench.gpu_check.plan import RowSpec
from bench.speed.env import sync
from bench.speed.runners import ReferenceRunner, Runner
from bench.speed.timing import time_window
from facegan.config.files import resolve_config
from facegan.config.schema import ModelConfig
from facegan.data.dataset import PackedDataset
from facegan.training.build import build_training
from facegan.training.step import StepStats

PREFIX = "GPUCHECK "
REPO_ROOT = Path(__file__).resolve().parents[2]


def emit(result: dict[str, Any]) -> None:
    """One progress line for the parent (it keeps the last one it reads)."""
    print(PREFIX + json.dumps(result), flush=True)


def peak_memory(device: torch.device) -> tuple[float, str]:
    """Peak memory of this process in GiB: the CUDA caching allocator's peak on a GPU, else host RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30, "GPU (torch.cuda.max_memory_allocated)"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "host RSS (ru_maxrss)"


class TrainRunner(Runner):
    """`facegan train`'s step for a preset with flag overrides, built by `build_training` as the loop
    builds it; the step statistics stay on the device until the window ends, as the loop logs them."""

    def __init__(self, spec: RowSpec, packed: Path, device: torch.device) -> None:
        flags: dict[str, Any] = {
            "size": spec.size,
            "ngf": spec.ngf,
            "ndf": spec.ngf,
            "batch_size": spec.batch,
            "seed": 0,
            **spec.perf,
        }
        cfg = resolve_config(spec.preset, {}, flags)
        self.training = build_training(cfg, device, PackedDataset(packed))
        self.training.g.train()
        self.training.d.train()
        self.device, self.images_per_step = device, spec.batch
        self.global_step = 0
        self.sums: torch.Tensor | None = None
        self.settings = self.training.perf.describe()

    def step(self) -> int:
        stats = self.training.step(self.global_step)
        self.global_step += 1
        vec = torch.stack(list(stats))
        self.sums = vec if self.sums is None else self.sums + vec
        return self.images_per_step

    def end_window(self) -> None:
        if self.sums is not None:
            self.last = dict(zip(StepStats._fields, self.sums.tolist()))  # the window's one sync
            self.sums = None
        sync(self.device)


class GenerateRunner(Runner):
    """`facegan.load("celeba64").generate(seeds)` with its default settings, every call new seeds."""

    def __init__(self, spec: RowSpec, device: torch.device) -> None:
        from facegan.api import load

        self.g = load("celeba64", device=str(device))
        self.batch, self.next_seed, self.device = spec.batch, 0, device
        self.images_per_step = spec.batch
        amp = getattr(self.g.model, "amp_dtype", None)  # set when load's "auto" chose a fast path
        self.settings = f"{'fp32' if amp is None else str(amp).removeprefix('torch.')}, passes of 8 latents"

    def step(self) -> int:
        seeds = list(range(self.next_seed, self.next_seed + self.batch))
        self.next_seed += self.batch
        self.g.generate(seeds, output="tensor")  # back on the host: what a caller gets
        return self.batch


def timed_rows(spec: RowSpec, build: Any, device: torch.device) -> dict[str, Any]:
    """Build, warm up (first step timed on its own: that is where torch.compile compiles), calibrate
    the steps of a window to about `spec.window_s`, then time `spec.windows` windows."""
    result: dict[str, Any] = {"status": "running"}
    t0 = time.perf_counter()
    runner: Runner = build()
    sync(device)
    result["startup_s"] = time.perf_counter() - t0
    result["settings"] = getattr(runner, "settings", "")
    t0 = time.perf_counter()
    runner.step()
    runner.end_window()
    result["first_step_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(max(0, spec.warmup - 1)):
        runner.step()
    runner.end_window()
    result["warmup_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    probe = 3
    for _ in range(probe):
        runner.step()
    runner.end_window()
    per_step = (time.perf_counter() - t0) / probe
    steps = max(1, round(spec.window_s / max(per_step, 1e-6)))
    result.update(steps_per_window=steps, windows=[], images_per_step=runner.images_per_step)
    result["peak_mem_gib"], result["peak_mem_kind"] = peak_memory(device)
    emit(result)
    for _ in range(spec.windows):
        result["windows"].append(time_window(runner, steps))
        result["img_per_s"] = statistics.median(result["windows"])
        result["peak_mem_gib"], result["peak_mem_kind"] = peak_memory(device)
        emit(result)
    if isinstance(runner, ReferenceRunner):
        result["losses"] = runner.losses()
    elif isinstance(runner, TrainRunner):
        result["losses"] = {k: v / max(1, steps) for k, v in getattr(runner, "last", {}).items()}
    runner.close()
    result["status"] = "ok"
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_latency(spec: RowSpec, device: torch.device, limit_s: float) -> dict[str, Any]:
    """p50/p95 of GET /api/face.png through a real `facegan serve` on loopback, one request at a time,
    every seed new (no cache hit); the server's start and 5 warm-up requests are not counted."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "facegan",
        "serve",
        "--pretrained",
        "celeba64",
        "--device",
        device.type,
        "--port",
        str(port),
    ]
    t0 = time.perf_counter()
    server = subprocess.Popen(
        cmd,
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])},
    )
    base = f"http://127.0.0.1:{port}"
    result: dict[str, Any] = {"status": "running", "settings": "facegan serve defaults, 1 worker"}
    try:
        while True:
            if server.poll() is not None:
                err = server.stderr.read().decode(errors="replace") if server.stderr else ""
                raise RuntimeError(f"server exited: {err.strip().splitlines()[-1:] or err}")
            try:
                urllib.request.urlopen(base + "/", timeout=2).read()
                break
            except OSError:
                if time.perf_counter() - t0 > limit_s / 2:
                    raise TimeoutError("server did not answer within half the row's limit") from None
                time.sleep(0.2)
        result["startup_s"] = time.perf_counter() - t0
        for seed in range(5):
            urllib.request.urlopen(f"{base}/api/face.png?seed={seed}", timeout=30).read()
        lat = []
        for i in range(spec.requests):
            t = time.perf_counter()
            body = urllib.request.urlopen(f"{base}/api/face.png?seed={1000 + i}", timeout=30).read()
            lat.append(1000 * (time.perf_counter() - t))
            if not body.startswith(b"\x89PNG"):
                raise RuntimeError("the server answered something that is not a PNG")
        cuts = statistics.quantiles(lat, n=20, method="inclusive")  # 5 % steps: [9] = p50, [18] = p95
        result.update(
            status="ok",
            requests=len(lat),
            latency_ms={"p50": cuts[9], "p95": cuts[18], "max": max(lat)},
            img_per_s=len(lat) / (sum(lat) / 1000),
        )
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
    return result


def torchrun_row(spec: RowSpec, device: torch.device, tmp: Path) -> dict[str, Any]:
    """bench/scaling.py's 1-process and 2-rank rows (its worker joins through
    facegan.training.distributed)."""
    out = tmp / "scaling.json"
    cmd = [
        sys.executable,
        str(REPO_ROOT / "bench" / "scaling.py"),
        "--device",
        device.type,
        "--ranks",
        "2",
        "--size",
        str(spec.size),
        "--ngf",
        str(spec.ngf),
        "--batch-size",
        str(spec.batch),
        "--json",
        str(out),
        "--windows",
        str(spec.windows),
        "--rounds",
        "1",
    ]
    if device.type == "cpu":
        cmd += ["--images", "64", "--steps", "1", "--warmup", "1", "--threads", "1"]
    else:
        cmd += ["--steps", "50", "--warmup", "10"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=REPO_ROOT)
    rows = json.loads(out.read_text())
    two = next(r for r in rows if r["processes"] == 2)
    return {
        "status": "ok",
        "img_per_s": two["img_per_s"],
        "settings": "scaling.py: dcgan, 2 ranks",
        "scaling": rows,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gpu_check.worker")
    p.add_argument("--spec", required=True, help="the RowSpec as JSON")
    p.add_argument("--device", required=True)
    p.add_argument("--packed", required=True, help="facegan's prepared dataset")
    p.add_argument("--images", required=True, help="the same images as an ImageFolder root (reference)")
    p.add_argument("--limit-s", type=float, required=True)
    p.add_argument("--tmp", required=True)
    args = p.parse_args(argv)
    spec = RowSpec(**json.loads(args.spec))
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    mc = ModelConfig(size=spec.size, ngf=spec.ngf, ndf=spec.ngf)
    if spec.kind == "reference":
        result = timed_rows(
            spec, lambda: ReferenceRunner(Path(args.images), mc, spec.batch, 2, device), device
        )
        result["settings"] = "fp32 eager, torch's default Adam, DataLoader(2 workers)"
    elif spec.kind == "train":
        result = timed_rows(spec, lambda: TrainRunner(spec, Path(args.packed), device), device)
    elif spec.kind == "generate":
        result = timed_rows(spec, lambda: GenerateRunner(spec, device), device)
    elif spec.kind == "serve":
        result = serve_latency(spec, device, args.limit_s)
    elif spec.kind == "torchrun":
        result = torchrun_row(spec, device, Path(args.tmp))
    else:
        raise SystemExit(f"unknown row kind {spec.kind!r}")
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
