"""The command line of `bench/throughput.py`: pick rows and settings, run them, print the report."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from bench.speed.env import environment, log, precision_of, row_peak
from bench.speed.flops import step_flops
from bench.speed.memory import make_tiled_dataset, memory_child, run_memory
from bench.speed.profiling import profile_steps
from bench.speed.reference import reference_models
from bench.speed.report import FULL_CELEBA, render
from bench.speed.runners import FaceganRunner, GeneratorRunner, ReferenceRunner, Runner
from bench.speed.screening import describe, parse_candidate, search_fastest
from bench.speed.staging import Staged, stage_data
from bench.speed.timing import Live, Plan, Row, interleave, make_plan, paired_ratio, short_error, start_row
from facegan.config.schema import ModelConfig, PerfConfig
from facegan.errors import FaceganError
from facegan.networks.dcgan import build_models
from facegan.runtime.device import pick_device
from facegan.runtime.perf import Perf, resolve

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


class Session:
    """One run's fixed inputs (device, model, plan, staged data, FLOPs, environment) and its rows."""

    def __init__(
        self,
        args: argparse.Namespace,
        device: torch.device,
        mc: ModelConfig,
        plan: Plan,
        specs: Sequence[str],
        staged: Staged,
        flops: dict[str, float],
        env: dict[str, Any],
        results: dict[str, Any],
    ) -> None:
        self.args, self.device, self.mc, self.plan, self.specs = args, device, mc, plan, specs
        self.staged, self.flops, self.env, self.results = staged, flops, env, results
        self.rows: list[Row] = []

    def row(
        self,
        key: str,
        label: str,
        settings: str,
        perf: Perf | None,
        flops: str,
        warmup_s: float | None = None,
    ) -> Row:
        """A new table row, compared against the peak of the precision `perf` computes in."""
        prec = precision_of(perf, self.device)
        row = Row(
            key,
            label,
            settings,
            prec,
            gflop_per_img=self.flops[flops],
            peak_flops=row_peak(self.device, prec, self.env),
            warmup_s=warmup_s,
        )
        self.rows.append(row)
        return row

    def facegan_runner(self, perf: Perf) -> FaceganRunner:
        return FaceganRunner(self.staged.packed, perf, self.mc, self.args.batch_size, self.device)

    def training_rows(self, only: set[str]) -> None:
        """Rows a, b, f, c: built and warmed up, then timed in interleaved rounds."""
        args, plan, device = self.args, self.plan, self.device
        default = resolve(PerfConfig(), device)
        live: list[Live | None] = []
        best_c: tuple[Perf, Runner, float] | None = None
        if "c" in only:  # screened first, so no other row's workers run during the probes
            log(f"row c: screening {len(self.specs)} candidate settings")
            best, runner, warm_s, records = search_fastest(
                self.specs, self.facegan_runner, device, plan, plan.probe_steps, training=True
            )
            self.results["c_candidates"] = records
            best_c = (best, runner, warm_s) if best is not None and runner is not None else None
            del runner
        if "a" in only:
            log(f"row a: reference recipe (ImageFolder + DataLoader with {args.workers} workers, fp32 eager)")
            row = self.row(
                "a",
                "reference recipe",
                f"PIL JPEG DataLoader ×{args.workers} workers, Sigmoid+BCELoss, default Adam",
                None,
                "reference_step",
            )
            live.append(
                start_row(
                    row,
                    lambda: ReferenceRunner(
                        self.staged.image_root, self.mc, args.batch_size, args.workers, device
                    ),
                    plan.ref_warmup,
                    plan.steps,
                )
            )
        fp32 = resolve(PerfConfig(amp="off"), device)
        facegan_rows = [("b", "facegan default", default)] if "b" in only else []
        if "f" in only and fp32 != default:  # the old CPU default (exact fp32), kept for the history
            facegan_rows.append(("f", "facegan fp32", fp32))
        for key, label, perf in facegan_rows:
            log(f"row {key}: {label} ({describe(perf)})")
            row = self.row(key, label, describe(perf), perf, "facegan_step")
            live.append(start_row(row, lambda perf=perf: self.facegan_runner(perf), plan.warmup, plan.steps))
        if "c" in only:
            if best_c is None:
                self.rows.append(
                    Row(
                        "c",
                        "facegan fastest",
                        "every candidate failed",
                        "—",
                        error="every candidate failed (see candidates)",
                    )
                )
            else:  # warm-up: the candidate's own, compile included
                row = self.row(
                    "c", "facegan fastest", describe(best_c[0]), best_c[0], "facegan_step", warmup_s=best_c[2]
                )
                live.append(Live(row, best_c[1], plan.steps))
            best_c = None
        log(f"timing rows {', '.join(r.row.key for r in live if r)} in {plan.windows} interleaved rounds")
        interleave([r for r in live if r], plan.windows)

    def gen_rows(self) -> None:
        """gen-default and gen-fastest: generator-only inference, screened and timed like training."""
        device, plan, mc = self.device, self.plan, self.mc
        gen_batch = self.results["gen_batch"]
        default = resolve(PerfConfig(), device)
        prec = precision_of(default, device)
        row = Row(
            "gen-default",
            "G inference, default",
            describe(default, training=False) + f", batch {gen_batch}",
            prec,
            gflop_per_img=self.flops["g_forward"],
            peak_flops=row_peak(device, prec, self.env),
        )
        log("row gen-fastest: screening inference settings")
        best, runner, warm_s, records = search_fastest(
            self.specs,
            lambda perf: GeneratorRunner(perf, mc, gen_batch, device),
            device,
            plan,
            plan.gen_steps,
            training=False,
        )
        self.results["gen_candidates"] = records
        self.rows.append(row)
        live = [
            start_row(
                row, lambda: GeneratorRunner(default, mc, gen_batch, device), plan.warmup, plan.gen_steps
            )
        ]
        if best is None or runner is None:
            self.rows.append(
                Row(
                    "gen-fastest",
                    "G inference, fastest",
                    "every candidate failed",
                    "—",
                    error="every candidate failed (see candidates)",
                )
            )
        else:
            fast = self.row(
                "gen-fastest",
                "G inference, fastest",
                describe(best, training=False) + f", batch {gen_batch}",
                best,
                "g_forward",
                warmup_s=warm_s,
            )
            live.append(Live(fast, runner, plan.gen_steps))
        del runner
        log("timing rows gen-default, gen-fastest in interleaved rounds")
        interleave([r for r in live if r], plan.windows)

    def memory(self, tmp: Path) -> list[dict[str, Any]]:
        """Peak host RSS while training from the packed set, and from it tiled to full-CelebA size."""
        args, mc, staged, device = self.args, self.mc, self.staged, self.device
        mem_steps = (
            args.mem_train_steps if args.mem_train_steps is not None else (0 if device.type == "cuda" else 3)
        )  # 0 = the whole epoch
        log("memory: peak RSS while training from the packed dataset (fresh process)")
        out = [
            run_memory(
                staged.packed,
                f"{staged.count:,} images at {mc.size}²",
                device,
                mc,
                args.batch_size,
                mem_steps,
                args.threads,
            )
        ]
        if args.mem_full_count:
            free = shutil.disk_usage(tmp).free
            need = args.mem_full_count * 3 * mc.size * mc.size
            if need * 1.2 > free:
                out.append(
                    {
                        "label": "tiled",
                        "error": f"needs {need / 1e9:.1f} GB of temp disk, {free / 1e9:.1f} GB free",
                    }
                )
            else:
                log(f"memory: tiling the packed set to {args.mem_full_count:,} images ({need / 1e9:.2f} GB)")
                tiled = make_tiled_dataset(staged.packed, tmp / "tiled", args.mem_full_count)
                full = " (full-CelebA size)" if args.mem_full_count == FULL_CELEBA else ""
                out.append(
                    run_memory(
                        tiled,
                        f"tiled to {args.mem_full_count:,} images at {mc.size}²{full}",
                        device,
                        mc,
                        args.batch_size,
                        mem_steps,
                        args.threads,
                    )
                )
                shutil.rmtree(tiled)
        return out


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
