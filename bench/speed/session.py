"""One throughput run's rows (bench/throughput.py): the training rows a, b, f and c and the generator rows,
each built, warmed up and timed in interleaved rounds, and the peak host memory while training."""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from bench.speed.env import log, precision_of, row_peak
from bench.speed.memory import make_tiled_dataset, run_memory
from bench.speed.report import FULL_CELEBA
from bench.speed.runners import FaceganRunner, GeneratorRunner, ReferenceRunner, Runner
from bench.speed.screening import describe, search_fastest
from bench.speed.staging import Staged
from bench.speed.timing import Live, Plan, Row, interleave, start_row
from facegan.config.schema import ModelConfig, PerfConfig
from facegan.runtime.perf import Perf, resolve


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
