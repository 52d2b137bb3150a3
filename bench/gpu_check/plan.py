"""The check's rows, their sizes on a GPU and in `--smoke`, and the budget that decides what runs.

Each row belongs to a *part* with a share of the budget. A row runs in a child process whose time limit
is what is left of its part (plus what earlier parts left unused) and never more than what is left of
the whole budget; a row whose limit would be under its `min_s` is not started and is reported as
skipped, with the reason. So the check ends inside its budget whatever a compiler or a driver does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

# Share of the budget per part, in the order the parts run. The fastest-combination search gets the
# most: each torch.compile candidate spends most of its time compiling.
PART_SHARES: dict[str, float] = {
    "reference": 0.08,
    "default": 0.09,
    "fastest": 0.42,
    "architectures": 0.15,
    "generate": 0.09,
    "serve": 0.09,
    "torchrun": 0.08,
}
RESERVE_S = 5.0  # kept back from every limit for the parent's own bookkeeping and the last report


@dataclass(frozen=True)
class Sizes:
    """Model and batch sizes of one mode: the seeds' on a GPU, tiny ones for `--smoke` on a CPU."""

    size: int
    ngf: int
    batch: int
    big_batch: int  # the "batch 1024" of the fastest search
    r3gan_ngf: int
    r3gan_batch: int
    gen_batch: int  # the "generate at batch 256" row
    requests: int  # /api/face.png requests timed for the latency row
    warmup: int  # untimed training steps before the first window (compiled rows: twice this)
    window_s: float  # target seconds of one timed window
    windows: int  # timed windows per row (the median is reported)


GPU_SIZES = Sizes(
    size=64,
    ngf=64,
    batch=128,
    big_batch=1024,
    r3gan_ngf=32,
    r3gan_batch=64,
    gen_batch=256,
    requests=200,
    warmup=15,
    window_s=2.0,
    windows=5,
)
SMOKE_SIZES = Sizes(
    size=32,
    ngf=8,
    batch=8,
    big_batch=32,
    r3gan_ngf=8,
    r3gan_batch=8,
    gen_batch=16,
    requests=6,
    warmup=1,
    window_s=0.2,
    windows=2,
)


@dataclass(frozen=True)
class RowSpec:
    """What one row runs: handed to `bench.gpu_check.worker` as JSON."""

    key: str
    part: str
    kind: str  # reference | train | generate | serve | torchrun
    label: str
    preset: str = "dcgan"
    size: int = 64
    ngf: int = 64
    batch: int = 128
    perf: dict[str, str] = field(default_factory=dict)  # PerfConfig fields; {} = facegan's defaults
    requests: int = 0
    warmup: int = 0
    window_s: float = 1.0
    windows: int = 3
    min_s: float = 10.0  # a row is not started with less time than this

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


FAST = {"amp": "bf16", "channels_last": "on", "fused_adam": "on", "resident": "on"}


def make_rows(sizes: Sizes, smoke: bool) -> list[RowSpec]:
    """Every row, in run order. In `--smoke` the torch.compile candidates are left out (compiling on
    two CPU cores alone would take minutes); everything else runs as on a GPU, at tiny sizes."""
    s = sizes
    common: dict[str, Any] = {
        "size": s.size,
        "ngf": s.ngf,
        "warmup": s.warmup,
        "window_s": s.window_s,
        "windows": s.windows,
    }
    compiled: dict[str, Any] = {**common, "warmup": 2 * s.warmup, "min_s": 30.0 if not smoke else 5.0}
    rows = [
        RowSpec(
            "reference",
            "reference",
            "reference",
            "seeds' DCGAN, pytorch/examples recipe: JPEG DataLoader (2 workers), fp32 eager, Sigmoid+BCELoss",
            batch=s.batch,
            perf={
                "amp": "off",
                "channels_last": "off",
                "compile": "off",
                "fused_adam": "off",
                "resident": "off",
            },
            **common,
        ),
        RowSpec(
            "default", "default", "train", "facegan train defaults (dcgan preset)", batch=s.batch, **common
        ),
        RowSpec(
            "bf16-nchw-b128",
            "fastest",
            "train",
            "bf16, NCHW, fused Adam, resident data, eager",
            batch=s.batch,
            perf={**FAST, "channels_last": "off"},
            **common,
        ),
        RowSpec(
            "fast-eager-b1024",
            "fastest",
            "train",
            "bf16, channels_last, fused Adam, resident, eager",
            batch=s.big_batch,
            perf=FAST,
            **common,
        ),
    ]
    if not smoke:
        # torch.compile candidates in NCHW first: on an H200 (torch 2.11) inductor's backward of the
        # channels_last ConvTranspose failed its own stride assertion; the CL row keeps showing that.
        nchw = {**FAST, "channels_last": "off"}
        for mode, tag in (("default", "compile"), ("reduce-overhead", "cudagraphs")):
            for batch in (s.batch, s.big_batch):
                label = f"bf16, NCHW, fused Adam, resident, compile={mode}"
                perf = {**nchw, "compile": mode}
                rows.append(
                    RowSpec(
                        f"{tag}-nchw-b{batch}", "fastest", "train", label, batch=batch, perf=perf, **compiled
                    )
                )
        label = "bf16, channels_last, fused Adam, resident, compile=reduce-overhead"
        rows.append(
            RowSpec(
                f"cudagraphs-b{s.big_batch}",
                "fastest",
                "train",
                label,
                batch=s.big_batch,
                perf={**FAST, "compile": "reduce-overhead"},
                **compiled,
            )
        )
        label = "bf16, NCHW, fused Adam, resident, compile=max-autotune"
        rows.append(
            RowSpec(
                f"autotune-nchw-b{s.big_batch}",
                "fastest",
                "train",
                label,
                batch=s.big_batch,
                perf={**nchw, "compile": "max-autotune"},
                **{**compiled, "min_s": 60.0},
            )
        )
    rows += [
        RowSpec(
            "r3gan",
            "architectures",
            "train",
            "r3gan preset at the anime64 size shipped until 2026-12-04 (ngf=ndf="
            f"{s.r3gan_ngf}, batch {s.r3gan_batch}), facegan defaults",
            preset="r3gan",
            batch=s.r3gan_batch,
            **{**common, "ngf": s.r3gan_ngf},
        ),
        RowSpec(
            "dcgan-plus",
            "architectures",
            "train",
            "dcgan-plus preset (EMA + DiffAugment), facegan defaults",
            preset="dcgan-plus",
            batch=s.batch,
            **common,
        ),
        RowSpec(
            "generate-b1",
            "generate",
            "generate",
            "facegan.load('celeba64').generate, one seed per call (default settings)",
            batch=1,
            **common,
        ),
        RowSpec(
            f"generate-b{s.gen_batch}",
            "generate",
            "generate",
            f"facegan.load('celeba64').generate, {s.gen_batch} seeds per call (default settings)",
            batch=s.gen_batch,
            **common,
        ),
        RowSpec(
            "serve",
            "serve",
            "serve",
            "GET /api/face.png?seed=N through `facegan serve --pretrained "
            "celeba64`, sequential, every seed new",
            requests=s.requests,
            **common,
            min_s=20.0,
        ),
        RowSpec(
            "torchrun-2",
            "torchrun",
            "torchrun",
            "2 ranks under torchrun (NCCL on GPUs, gloo in "
            "--smoke), bench/scaling.py's worker, same global batch",
            batch=s.batch,
            **common,
            min_s=20.0,
        ),
    ]
    return rows


@dataclass
class Budget:
    """Time left for the whole check and for each part; unused time of a part passes to the next."""

    total_s: float
    parts: tuple[str, ...] = tuple(PART_SHARES)  # the parts that have rows: they share the whole budget
    clock: Callable[[], float] = time.monotonic
    started: float = field(init=False)
    part_spent: dict[str, float] = field(default_factory=dict)
    carried: float = 0.0
    _current: str | None = None

    def __post_init__(self) -> None:
        self.started = self.clock()

    def elapsed(self) -> float:
        return self.clock() - self.started

    def left(self) -> float:
        return self.total_s - self.elapsed()

    def enter(self, part: str) -> None:
        """Start `part`: what the previous part did not use is carried over."""
        if part == self._current:
            return
        if self._current is not None:
            self.carried = max(
                0.0, self.share(self._current) + self.carried - self.part_spent.get(self._current, 0.0)
            )
        self._current = part

    def share(self, part: str) -> float:
        weights = sum(PART_SHARES[p] for p in self.parts)
        return PART_SHARES.get(part, 0.0) / weights * self.total_s if part in self.parts else 0.0

    def limit(self, part: str) -> float:
        """Seconds the next row of `part` may run."""
        self.enter(part)
        of_part = self.share(part) + self.carried - self.part_spent.get(part, 0.0)
        return max(0.0, min(of_part, self.left() - RESERVE_S))

    def spend(self, part: str, seconds: float) -> None:
        self.part_spent[part] = self.part_spent.get(part, 0.0) + seconds


def skip_reason(spec: RowSpec, limit_s: float, budget: Budget) -> str | None:
    """Why `spec` is not started with `limit_s` seconds, or None to start it."""
    if limit_s < spec.min_s:
        return (
            f"budget: {limit_s:.0f} s left for part {spec.part!r} ({budget.left():.0f} s of the whole "
            f"check), the row needs at least {spec.min_s:.0f} s"
        )
    return None
