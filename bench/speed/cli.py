"""The command line of `bench/throughput.py`: pick rows and settings, run them, print the report."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from bench.speed.env import environment, log
from bench.speed.flops import step_flops
from bench.speed.memory import memory_child
from bench.speed.profiling import profile_steps
from bench.speed.reference import reference_models
from bench.speed.report import FULL_CELEBA, render
from bench.speed.screening import parse_candidate
from bench.speed.session import Session
from bench.speed.staging import stage_data
from bench.speed.timing import make_plan, paired_ratio, short_error
from facegan.config.schema import ModelConfig
from facegan.errors import FaceganError
from facegan.networks.factory import build_models
from facegan.runtime.device import pick_device

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "img_align_celeba.zip"
ROWS = ("a", "b", "f", "c", "gen")

# Candidate speed settings screened for row c (and, without the optimizer fields, for gen-fastest).
# Each is a PerfConfig; every one keeps the seed recipe's semantics (see facegan/runtime/perf.py).
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


def build_parser() -> argparse.ArgumentParser:
    """The command line (see bench/README.md for examples)."""
    p = argparse.ArgumentParser(
        prog="bench/throughput.py",
        description="Images/s of full DCGAN training steps: the reference recipe vs facegan (default and "
        "fastest settings), plus generator-only inference, FLOPs, % of peak and host memory.",
    )
    p.add_argument(
        "--data", help=f"zip or folder of JPEGs, or synthetic:N (default: {DEFAULT_DATA} if it exists)"
    )
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
    p.add_argument(
        "--candidate",
        action="append",
        dest="candidates",
        metavar="SPEC",
        help="a PerfConfig to screen for row c / gen-fastest, e.g. amp=bf16,channels_last=on; "
        "repeatable (default: a per-device list)",
    )
    p.add_argument(
        "--threads",
        type=int,
        help="torch intra-op threads (default: torch's choice, one per core); on a shared, "
        "loaded machine fewer threads can stall less in OpenMP barriers",
    )
    p.add_argument("--workers", type=int, default=2, help="reference DataLoader workers (the recipe's 2)")
    p.add_argument("--size", type=int, choices=(32, 64), default=64, help="image size (64: the seed)")
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--ndf", type=int, default=64)
    p.add_argument("--latent-dim", type=int, default=100)
    p.add_argument("--memory", choices=("on", "off"), default="on", help="measure peak host RSS")
    p.add_argument(
        "--mem-train-steps",
        type=int,
        help="training steps in the memory run (default: CPU 3 + the epoch's other batches "
        "data-only; CUDA one full epoch)",
    )
    p.add_argument(
        "--mem-full-count",
        type=int,
        default=FULL_CELEBA,
        help="also measure memory on the packed set tiled to this many images (0: skip)",
    )
    p.add_argument("--profile", action="store_true", help="append torch.profiler tables of one step of a, b")
    p.add_argument("--json", type=Path, help="also write all results to this file")
    p.add_argument("--memory-child", help=argparse.SUPPRESS)
    return p


def check_architecture(mc: ModelConfig) -> dict[str, int]:
    """The reference's nets must hold exactly facegan's parameters (the same architecture)."""
    ref_g, ref_d = reference_models(mc, torch.device("cpu"))
    fg_g, fg_d = build_models(mc)
    n_params = [sum(p.numel() for p in m.parameters()) for m in (ref_g, ref_d, fg_g, fg_d)]
    if n_params[:2] != n_params[2:]:
        raise AssertionError(f"reference and facegan nets differ in size: {n_params}")
    return {"G": n_params[0], "D": n_params[1]}


def run(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    """Run every selected row; returns the results (also rendered and printed by `main`)."""
    device = pick_device(args.device, ("cuda", "cpu"))  # --device offers auto, cpu, cuda
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

    results: dict[str, Any] = {
        "env": env,
        "model": asdict(mc),
        "batch_size": args.batch_size,
        "gen_batch": gen_batch,
        "plan": asdict(plan),
    }
    with tempfile.TemporaryDirectory(prefix="facegan-bench-") as tmp_name:
        tmp = Path(tmp_name)
        staged = stage_data(args.data, mc.size, tmp)
        results["data"] = {
            "description": staged.description,
            "images": staged.count,
            "prepare_s": staged.prepare_s,
        }
        if staged.count < args.batch_size:
            raise FaceganError(
                f"--batch-size {args.batch_size} is larger than the data ({staged.count} images)"
            )
        log("counting FLOPs (FlopCounterMode, one step at batch 16 on the CPU)")
        results["flops"] = step_flops(mc)
        results["params"] = check_architecture(mc)
        session = Session(args, device, mc, plan, specs, staged, results["flops"], env, results)
        session.training_rows(only)
        if "gen" in only:
            session.gen_rows()
        if args.memory == "on":
            results["memory"] = session.memory(tmp)
        if args.profile:
            log("profiling one step of rows a (compute only) and b")
            try:
                results["profile"] = profile_steps(staged, mc, args.batch_size, device)
            except Exception as err:  # the figures above are already measured; keep them
                results["profile"] = {"failed": short_error(err)}

    env["loadavg_end"] = os.getloadavg()
    rows = session.rows
    ref = next((r for r in rows if r.key == "a" and r.median), None)
    results["rows"] = [
        {
            **asdict(r),
            "median": r.median,
            "achieved_flops": r.achieved_flops,
            "pct_peak": r.pct_peak,
            "paired_ratio_to_a": paired_ratio(r, ref),
            "ratio_to_a": (
                r.median / ref.median
                if ref and ref.median and r.median and not r.key.startswith("gen")
                else None
            ),
        }
        for r in rows
    ]
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
            parser.error(
                f"no --data given and {DEFAULT_DATA} does not exist; pass --data PATH (a zip or "
                f"folder of JPEGs) or --data synthetic:N"
            )
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
