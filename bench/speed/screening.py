"""Screening candidate speed settings: short probes of each, the fastest one's runner kept warm."""

from __future__ import annotations

import gc
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from bench.speed.env import log, precision_of
from bench.speed.runners import Runner
from bench.speed.timing import Plan, short_error, time_window, warm_up
from facegan.config.schema import PerfConfig
from facegan.errors import FaceganError
from facegan.runtime.perf import Perf, resolve


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
        parts += [
            "fused Adam" if perf.fused_adam else "foreach Adam",
            "resident" if perf.resident else "memmap",
        ]
    parts.append(f"compile={perf.compile_mode}" if perf.compile_mode else "eager")
    return ", ".join(parts)


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


def search_fastest(
    specs: Sequence[str],
    build: Callable[[Perf], Runner],
    device: torch.device,
    plan: Plan,
    steps: int,
    training: bool,
    interleaved: bool | None = None,
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
            (perf.fused_adam, perf.resident) if training else ()
        )
        if key in seen:  # e.g. fused_adam is irrelevant for inference
            continue
        seen.add(key)
        probe = Probe(
            perf,
            {
                "candidate": spec,
                "precision": precision_of(perf, device),
                "settings": describe(perf, training),
            },
            None,
        )
        probes.append(probe)
        try:
            probe.runner = build(perf)
            probe.rec["warmup_s"] = warm_up(
                probe.runner, plan.warmup_compiled if perf.compile_mode else plan.warmup
            )
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
            log(
                f"  candidate {probe.rec['candidate']}: {probe.rec['probe_img_s']:,.1f} img/s "
                f"(probe windows {', '.join(f'{r:,.1f}' for r in probe.rates)}; "
                f"warm-up {probe.rec['warmup_s']:.1f} s)"
            )
    records = [p.rec for p in probes]
    if best is None or best.runner is None:
        return None, None, 0.0, records
    return best.perf, best.runner, best.rec["warmup_s"], records
