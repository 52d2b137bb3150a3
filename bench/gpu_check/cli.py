"""`python -m bench.gpu_check --out DIR [--budget-s 480] [--smoke] [--data ZIP]`: stage the data, then run
the plan's rows one child process at a time within the budget, rewriting the report after each."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from bench.gpu_check import report
from bench.gpu_check.plan import GPU_SIZES, SMOKE_SIZES, Budget, RowSpec, make_rows, skip_reason
from bench.gpu_check.worker import PREFIX, REPO_ROOT
from bench.speed.env import cpu_info, cuda_peak, log
from bench.speed.staging import stage_data

DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "img_align_celeba.zip"
TRAIN_PARTS = ("default", "fastest")  # the rows the fastest one is chosen from


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.gpu_check",
        description="Measure facegan's CUDA paths in one budgeted run: reference vs default vs fastest "
        "training, r3gan, dcgan-plus, generation, page latency, 2-rank torchrun.",
    )
    p.add_argument("--out", type=Path, required=True, help="folder for gpu-check.json and gpu-check.md")
    p.add_argument(
        "--budget-s",
        type=float,
        default=480.0,
        help="seconds for the whole check (default 480); rows that would not fit are skipped",
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="every row on the CPU at tiny sizes, a few steps each (CI runs this)",
    )
    p.add_argument(
        "--data",
        help="zip or folder of face images, or synthetic:N (default: the shared "
        "6k CelebA zip when present, else synthetic:6000, labelled so)",
    )
    p.add_argument("--logs", type=Path, help="folder for each row's stderr (default: OUT/logs)")
    p.add_argument("--only", help="comma-separated row keys to run (default: all)")
    return p


def environment(device: torch.device) -> dict[str, Any]:
    cuda = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if cuda else f"cpu ({cpu_info().model})"
    peak = cuda_peak(name, "bf16") if cuda else None
    return {
        "device": name,
        "gpu_count": torch.cuda.device_count() if cuda else 0,
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "python": platform.python_version(),
        "cpu_cores": os.cpu_count(),
        "bf16_peak_tflops": peak / 1e12 if peak else None,
    }


def gflop_per_image(spec: RowSpec) -> float | None:
    """Counted FLOPs of one training step per image (eager fp32 on the CPU: the architecture's count)."""
    from bench.arch_cost import step_flops
    from bench.speed.flops import step_flops as reference_flops
    from facegan.config.files import resolve_config
    from facegan.config.schema import ModelConfig

    if spec.kind == "reference":
        return reference_flops(ModelConfig(size=spec.size, ngf=spec.ngf, ndf=spec.ngf), batch=2)[
            "reference_step"
        ]
    if spec.kind == "train":
        cfg = resolve_config(spec.preset, {}, {"size": spec.size, "ngf": spec.ngf, "ndf": spec.ngf})
        return step_flops(cfg, batch=2)[0]
    return None


def run_child(
    spec: RowSpec, limit_s: float, device: torch.device, staged: Any, tmp: Path, log_path: Path
) -> dict[str, Any]:
    """Run one row's worker with `limit_s`; its last progress line, marked partial if it was stopped."""
    cmd = [
        sys.executable,
        "-m",
        "bench.gpu_check.worker",
        "--spec",
        json.dumps(spec.to_dict()),
        "--device",
        str(device),
        "--packed",
        str(staged.packed),
        "--images",
        str(staged.image_root),
        "--limit-s",
        str(limit_s),
        "--tmp",
        str(tmp),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    with open(log_path, "w") as err:
        # A session of its own, so a stopped row takes its DataLoader workers and servers with it.
        proc = subprocess.Popen(
            cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=err, text=True, env=env, start_new_session=True
        )
        try:
            out, _ = proc.communicate(timeout=limit_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            timed_out = True
    lines = [json.loads(x[len(PREFIX) :]) for x in out.splitlines() if x.startswith(PREFIX)]
    result: dict[str, Any] = lines[-1] if lines else {}
    if timed_out:
        has_figures = bool(result.get("windows"))
        result["status"] = "partial" if has_figures else "timeout"
        result["reason"] = f"stopped at its {limit_s:.0f} s limit" + (
            f" after {len(result['windows'])} timed windows" if has_figures else ""
        )
    elif proc.returncode != 0 or result.get("status") != "ok":
        result["status"] = "error"
        result["reason"] = last_error(log_path.read_text(errors="replace"), proc.returncode)
    return result


def last_error(stderr: str, returncode: int | None) -> str:
    """The exception line of a traceback (`SomeError: ...`), else the last line, for the table."""
    lines = [x.strip() for x in stderr.splitlines() if x.strip()]
    errors = [x for x in lines if re.match(r"^[\w.]+(Error|Exception|Interrupt)\b", x)]
    return ((errors or lines or [f"exit code {returncode}"])[-1])[:300]


def pick_fastest(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    done = [r for r in rows if r["part"] in TRAIN_PARTS and r["kind"] == "train" and r.get("img_per_s")]
    return max(done, key=lambda r: r["img_per_s"]) if done else None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    sizes = SMOKE_SIZES if args.smoke else GPU_SIZES
    args.out.mkdir(parents=True, exist_ok=True)
    logs = args.logs or args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    data = args.data or (
        "synthetic:64" if args.smoke else str(DEFAULT_DATA) if DEFAULT_DATA.exists() else "synthetic:6000"
    )
    rows = make_rows(sizes, args.smoke)
    if args.only:
        keep = set(args.only.split(","))
        rows = [r for r in rows if r.key in keep]
    budget = Budget(args.budget_s, parts=tuple(dict.fromkeys(r.part for r in rows)))
    env = environment(device)
    doc: dict[str, Any] = {
        "schema": report.SCHEMA_VERSION,
        "command": shlex.join(["python", "-m", "bench.gpu_check", *argv]),
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "smoke": args.smoke,
        "budget_s": args.budget_s,
        "env": env,
        "data": {},
        "rows": [],
        "skipped": [],
        "fastest": None,
        "elapsed_s": 0.0,
        "finished": False,
    }
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp_name:
        tmp = Path(tmp_name)
        t0 = time.perf_counter()
        staged = stage_data(data, sizes.size, tmp / "data")
        synthetic = data.startswith("synthetic:")
        doc["data"] = {
            "description": (
                f"SYNTHETIC faces (procedural, CelebA's 89×109 JPEG shape), not real data: {staged.count}"
            )
            if synthetic
            else f"{staged.count} faces from {Path(data).name}",
            "synthetic": synthetic,
            "count": staged.count,
            "prepare_s": time.perf_counter() - t0,
        }
        described = doc["data"]["description"]
        log(f"{env['device']}: {len(rows)} rows, budget {args.budget_s:.0f} s, data {described}")

        def run_row(spec: RowSpec, limit: float) -> dict[str, Any]:
            return run_child(spec, limit, device, staged, tmp, logs / f"{spec.key}.log")

        def not_here(spec: RowSpec) -> str | None:
            if spec.kind == "torchrun" and device.type == "cuda" and env["gpu_count"] < 2:
                return f"needs 2 GPUs for 2 NCCL ranks; this machine has {env['gpu_count']}"
            return None

        run_plan(
            rows,
            budget,
            doc,
            run_row,
            not_here,
            lambda: report.write({**doc, "elapsed_s": budget.elapsed()}, args.out),
        )
        doc.update(elapsed_s=budget.elapsed(), finished=True)
        report.write(doc, args.out)
    print(report.markdown(doc))
    return 0


def run_plan(
    rows: Sequence[RowSpec],
    budget: Budget,
    doc: dict[str, Any],
    run_row: Callable[[RowSpec, float], dict[str, Any]],
    not_here: Callable[[RowSpec], str | None],
    written: Callable[[], None],
) -> None:
    """Run `rows` in order within `budget`, each with the time limit the budget gives its part; a row
    that would get less than its `min_s` (or that this machine cannot run) is skipped with the reason.
    `doc` gains every row as it ends and `written` is called after each, so the files stay current."""
    reference: float | None = None
    fastest_done = False
    for spec in rows:
        if spec.part != "fastest" and not fastest_done and any(r["part"] == "fastest" for r in doc["rows"]):
            fastest_done = add_fastest_row(doc)
        limit = budget.limit(spec.part)
        reason = not_here(spec) or skip_reason(spec, limit, budget)
        if reason:
            log(f"skip {spec.key}: {reason}")
            doc["skipped"].append({"key": spec.key, "reason": reason})
            written()
            continue
        log(f"row {spec.key} (limit {limit:.0f} s)")
        started = budget.clock()
        result = run_row(spec, limit)
        budget.spend(spec.part, budget.clock() - started)
        row = {
            "key": spec.key,
            "part": spec.part,
            "kind": spec.kind,
            "label": spec.label,
            "spec": spec.to_dict(),
            **result,
            "wall_s": budget.clock() - started,
        }
        row["gflop_per_img"] = gflop_per_image(spec)
        if spec.kind == "reference" and row.get("img_per_s"):
            reference = row["img_per_s"]
        rate = row.get("img_per_s")
        # Ratios compare training rows only: faces/s of generation is another workload.
        comparable = spec.kind in ("reference", "train", "torchrun")
        row["ratio_to_reference"] = rate / reference if rate and reference and comparable else None
        peak = doc["env"]["bf16_peak_tflops"]
        gflop = row["gflop_per_img"]
        row["pct_bf16_peak"] = 100 * rate * gflop / (peak * 1e3) if rate and gflop and peak else None
        log(f"row {spec.key}: {row['status']} {rate or ''} {row.get('reason', '')}")
        doc["rows"].append(row)
        written()
    if not fastest_done:
        add_fastest_row(doc)


def add_fastest_row(doc: dict[str, Any]) -> bool:
    """Append the "fastest" row: a copy of the best default/candidate row, naming which it is."""
    best = pick_fastest(doc["rows"])
    if best is None:
        return True
    doc["fastest"] = best["key"]
    doc["rows"].append(
        {
            **best,
            "key": "fastest",
            "part": "fastest",
            "label": f"fastest found = {best['key']}: {best['label']}",
        }
    )
    return True
