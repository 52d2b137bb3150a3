"""Timing: the run plan, warm-up, timed windows run in interleaved rounds, and the table's rows."""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from bench.speed.env import log
from bench.speed.runners import FaceganRunner, ReferenceRunner, Runner


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
