"""Distributed scaling: training img/s on 1 process against N torchrun ranks, on the same data, in one run.

    python bench/scaling.py                          # CPU: 1 process x 1 and x 2 threads, 2 ranks x 1 thread
    python bench/scaling.py --device cuda --ranks 1,2,4,8 --batch-size 256     # a GPU machine
    python bench/scaling.py --help

Each row starts `facegan`'s real distributed path — `torch.distributed.run --standalone` launching this
script's worker, which joins with `facegan.training.distributed.session()`, builds the run with
`facegan.training.build.build_training` + `facegan.training.distributed.adapt` and steps it with
`Training.step` (exactly what `facegan train`'s trainer does per step) — or the same worker alone for
the one-process rows. The global batch is the same in every row. Reported per row: img/s (median of
timed windows after warm-up), the scaling efficiency, and the wall time per step spent in the gradient
all-reduces (exact on CPU, where gloo's all-reduce blocks; on CUDA it is launch time only, as NCCL runs
asynchronously). Rows run in interleaved rounds, so a load change on a shared machine hits each alike.

`--paper` prints the projection instead (no training): gradient bytes per step of the seed DCGAN at
64/128/256 px (parameters counted on the real model classes), ring all-reduce time 2(N-1)·α +
2(N-1)/N · bytes / bandwidth for each of the step's two all-reduces (D's gradients, then G's), and the
predicted scaling efficiency t(1) / (N · t(N)) with t(N) = FLOPs/img · B/N / achieved FLOP/s + launch
overhead + all-reduce time (no overlap: facegan all-reduces after each backward).

    python bench/scaling.py --paper                  # H100 assumptions, editable with the flags below

On a CPU, N ranks x T threads and one process x N·T threads use the same cores: the honest comparison is
between those two (`efficiency vs 1 process, same cores`); the classic efficiency, img/s(N) / (N x
img/s(1 rank)), is printed too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # runnable as `python bench/scaling.py` without installing facegan
    sys.path.insert(0, str(REPO_ROOT))

from facegan.config.files import resolve_config  # noqa: E402
from facegan.data.dataset import PackedDataset  # noqa: E402
from facegan.data.prepare import prepare  # noqa: E402
from facegan.runtime.device import pick_device  # noqa: E402
from facegan.training.build import build_training  # noqa: E402
from facegan.training.distributed import adapt, session  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def worker(args: argparse.Namespace) -> None:
    """One rank (or the single process): warm up, time `--windows` windows of `--steps` steps, and
    (rank 0) write {img_per_s, step_s, allreduce_s} per window to `--out`."""
    torch.set_num_threads(args.threads)
    with session() as dist:
        flags = {
            "data": args.data,
            "size": args.size,
            "ngf": args.ngf,
            "ndf": args.ngf,
            "batch_size": args.batch_size,
            "device": args.device,
            "seed": 0,
        }
        cfg = resolve_config(args.preset, {}, flags)
        device = dist.place(pick_device(cfg.train.device))
        training = adapt(build_training(cfg, device, PackedDataset(args.data)), dist)
        step = 0
        for _ in range(args.warmup):
            training.step(step)
            step += 1
        windows = []
        for _ in range(args.windows):
            _sync(device)
            dist.comm_seconds = 0.0
            t0 = time.perf_counter()
            for _ in range(args.steps):
                training.step(step)
                step += 1
            _sync(device)
            seconds = time.perf_counter() - t0
            windows.append(
                {
                    "img_per_s": args.steps * args.batch_size / seconds,
                    "step_s": seconds / args.steps,
                    "allreduce_s": dist.comm_seconds / args.steps,
                }
            )
        if dist.is_main:
            Path(args.out).write_text(json.dumps(windows))


def _row(label: str, ranks: int, threads: int, args: argparse.Namespace, data: Path, out: Path) -> list[dict]:
    common = [
        str(Path(__file__).resolve()),
        "--worker",
        "--data",
        str(data),
        "--out",
        str(out),
        "--threads",
        str(threads),
        "--preset",
        args.preset,
        "--size",
        str(args.size),
        "--ngf",
        str(args.ngf),
        "--batch-size",
        str(args.batch_size),
        "--device",
        args.device,
        "--steps",
        str(args.steps),
        "--windows",
        str(args.windows),
        "--warmup",
        str(args.warmup),
    ]
    cmd = (
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            str(ranks),
            *common,
        ]
        if ranks > 1
        else [sys.executable, *common]
    )
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (NCCL, one GPU per rank)")
    p.add_argument(
        "--ranks",
        default=None,
        help="comma list of rank counts (default: 2 on CPU; 1,2,...,all GPUs on CUDA)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per rank (default: the cores divided by the most ranks, at least 1)",
    )
    p.add_argument("--preset", default="dcgan")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--ngf", type=int, default=32, help="ngf = ndf (default 32: the shipped models' width)")
    p.add_argument("--batch-size", type=int, default=64, help="the global batch, the same in every row")
    p.add_argument("--images", type=int, default=2048, help="synthetic faces to train on")
    p.add_argument("--steps", type=int, default=8, help="steps per timed window")
    p.add_argument("--windows", type=int, default=3, help="timed windows per row and round")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds of all rows")
    p.add_argument("--json", help="also write the results here")
    paper = p.add_argument_group("--paper: the projection's assumptions")
    paper.add_argument("--paper", action="store_true", help="print the on-paper projection and exit")
    paper.add_argument(
        "--achieved-tflops",
        type=float,
        default=150.0,
        help="achieved bf16 TFLOP/s per GPU on these convnets (default 150: ~15%% of an H100 "
        "SXM's 989 dense)",
    )
    paper.add_argument(
        "--launch-ms",
        type=float,
        default=1.0,
        help="fixed per-step time per GPU that does not shrink with the batch (kernel "
        "launches of an eager step, ~200 x 5 us; default 1.0)",
    )
    paper.add_argument("--nvlink-gbs", type=float, default=450.0, help="per GPU, per direction (H100 SXM)")
    paper.add_argument("--ib-gbs", type=float, default=50.0, help="per GPU (one NDR 400 Gb/s NIC per GPU)")
    paper.add_argument("--nvlink-us", type=float, default=10.0, help="latency per ring hop, NVLink")
    paper.add_argument("--ib-us", type=float, default=20.0, help="latency per ring hop, InfiniBand")
    # The worker mode (what torchrun starts):
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    if args.paper:
        print(projection(args))
        return 0

    if args.device == "cpu":
        ranks = [int(r) for r in (args.ranks or "2").split(",")]
        cores = os.cpu_count() or 1
        per = args.threads or max(1, cores // max(ranks))
        # One process on the same cores as the most ranks, one process with one rank's threads, then ranks.
        rows = [("1 process", 1, per * max(ranks)), ("1 process", 1, per)]
        rows += [(f"{n} ranks", n, per) for n in ranks if n > 1]
    else:
        gpus = torch.cuda.device_count()
        ranks = [int(r) for r in (args.ranks or ",".join(str(n) for n in range(1, gpus + 1))).split(",")]
        rows = [(f"{n} rank{'s' * (n > 1)}", n, args.threads or 1) for n in ranks]
    rows = list(dict.fromkeys(rows))
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        data = prepare(
            "synthetic", Path(tmp) / "faces", size=args.size, synthetic_count=args.images, quiet=True
        ).out
        results: dict[tuple[str, int, int], list[dict]] = {row: [] for row in rows}
        for _ in range(args.rounds):
            for row in rows:
                results[row] += _row(*row, args, data, Path(tmp) / "out.json")
    report = _report(rows, results, args, (load_before, os.getloadavg()[0]))
    print(report["text"])
    if args.json:
        Path(args.json).write_text(json.dumps(report["rows"], indent=1))
    return 0


def projection(args: argparse.Namespace) -> str:
    """The on-paper table: gradient bytes, all-reduce times and predicted efficiency (see the docstring)."""
    from arch_cost import step_flops  # bench/arch_cost.py: FLOPs of one facegan train_step per image

    from facegan.config.files import preset_config, with_overrides
    from facegan.config.schema import ModelConfig
    from facegan.networks.factory import build_models

    fabrics = [
        ("8 GPUs, NVLink", 8, args.nvlink_gbs * 1e9, args.nvlink_us * 1e-6),
        ("4x8 GPUs, InfiniBand", 32, args.ib_gbs * 1e9, args.ib_us * 1e-6),
    ]
    batches = (128, 1024, 4096)
    lines = [
        f"# seed DCGAN (ngf = ndf = 64), fp32 gradients; {args.achieved_tflops:g} TFLOP/s achieved per "
        f"GPU, {args.launch_ms:g} ms launch floor per step; NVLink {args.nvlink_gbs:g} GB/s + "
        f"{args.nvlink_us:g} us/hop, InfiniBand {args.ib_gbs:g} GB/s + {args.ib_us:g} us/hop",
        "| size | params G + D | gradient MB/step | GFLOP/img (step) | all-reduce ms/step, 8 NVLink | "
        "4x8 IB | efficiency 8 GPUs, B = "
        + " / ".join(map(str, batches))
        + " | 4x8 GPUs, B = "
        + " / ".join(map(str, batches))
        + " |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for size in (64, 128, 256):
        g, d = build_models(ModelConfig(size=size, ngf=64, ndf=64))
        counts = [sum(p.numel() for p in net.parameters()) for net in (d, g)]
        flops = (
            step_flops(with_overrides(preset_config("dcgan"), {"size": size, "ngf": 64, "ndf": 64}), batch=2)[
                0
            ]
            * 1e9
        )

        def comm(n: int, bw: float, alpha: float, counts: list[int] = counts) -> float:
            return sum(2 * (n - 1) * alpha + 2 * (n - 1) / n * 4 * c / bw for c in counts)

        def step(batch: float, flops: float = flops) -> float:
            return flops * batch / (args.achieved_tflops * 1e12) + args.launch_ms / 1000

        effs = [
            " / ".join(f"{step(b) / (n * (step(b / n) + comm(n, bw, a))):.2f}" for b in batches)
            for _, n, bw, a in fabrics
        ]
        lines.append(
            f"| {size} | {counts[1] / 1e6:.2f} M + {counts[0] / 1e6:.2f} M | "
            f"{4 * sum(counts) / 1e6:.1f} | {flops / 1e9:.2f} | "
            f"{1000 * comm(8, *fabrics[0][2:]):.2f} | {1000 * comm(32, *fabrics[1][2:]):.2f} | "
            f"{effs[0]} | {effs[1]} |"
        )
    return "\n".join(lines)


def _report(
    rows: list[tuple[str, int, int]], results: dict, args: argparse.Namespace, load: tuple[float, float]
) -> dict[str, Any]:
    med = {row: {k: statistics.median(w[k] for w in results[row]) for k in results[row][0]} for row in rows}
    one_rank = next((r for r in rows if r[1] == 1 and r[2] == min(x[2] for x in rows)), None)
    lines = [
        f"# bench/scaling.py — {dt.date.today()} — {platform.node()}, {args.device}, "
        f"torch {torch.__version__}, {os.cpu_count()} cores",
        f"# {args.preset} {args.size}px ngf=ndf={args.ngf}, global batch {args.batch_size}, "
        f"{args.rounds} rounds x {args.windows} windows x {args.steps} steps (median); "
        f"1-min load average {load[0]:.1f} before, {load[1]:.1f} after",
        "| processes | threads each | img/s (range) | step ms | all-reduce ms/step (share) | "
        "eff. vs N x 1 rank | eff. vs 1 process, same cores |",
        "|---|---|---|---|---|---|---|",
    ]
    out_rows = []
    for row in rows:
        label, n, threads = row
        m = med[row]
        ips = [w["img_per_s"] for w in results[row]]
        classic = m["img_per_s"] / (n * med[one_rank]["img_per_s"]) if one_rank and n > 1 else None
        same = next((r for r in rows if r[1] == 1 and r[2] == n * threads), None) if n > 1 else None
        vs_same = m["img_per_s"] / med[same]["img_per_s"] if same else None
        comm = f"{1000 * m['allreduce_s']:.1f} ({m['allreduce_s'] / m['step_s']:.0%})" if n > 1 else "—"
        lines.append(
            f"| {label} | {threads} | {m['img_per_s']:.1f} ({min(ips):.1f}-{max(ips):.1f}) | "
            f"{1000 * m['step_s']:.0f} | {comm} | {f'{classic:.2f}' if classic else '—'} | "
            f"{f'{vs_same:.2f}' if vs_same else '—'} |"
        )
        out_rows.append(
            {
                "processes": n,
                "threads": threads,
                **m,
                "img_per_s_range": [min(ips), max(ips)],
                "efficiency_vs_n_x_1": classic,
                "efficiency_vs_1_process_same_cores": vs_same,
            }
        )
    return {"text": "\n".join(lines), "rows": out_rows}


if __name__ == "__main__":
    sys.exit(main())
