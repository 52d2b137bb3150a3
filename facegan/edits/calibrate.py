"""Calibration: how far along its direction an edit goes at amount ±1.

For each edit and side, the step length is the shortest (bisection on [0, max_step]) at which the
finding classifier's mean probability of the attribute reaches `hi` (amount +1, "clearly with") over
the calibration faces that lack it, or falls to `lo` (amount −1, "clearly without") over those that
have it. `max_step` bounds it so the face stays a face: z ~ N(0, I) in 100 dimensions has norm
≈ 10 ± 0.7, and a step of 4 moves a latent about one norm standard deviation off that shell (the SWD
at ±1 in `facegan evaluate-edits` measures the cost). An edit that cannot reach its target within the
bound keeps max_step, and the report says so.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from facegan.edits.classifier import AttributeNet
from facegan.runtime.perf import model_config
from facegan.sampling.generate import forward_fixed, latents

LO, HI = 0.15, 0.85
MAX_STEP = 4.0
SHARE = 0.25  # fallback share of the calibration faces per side when too few are on the other side
MIN_FACES = 4


@torch.no_grad()
def mean_probability(g: nn.Module, net: AttributeNet, z: torch.Tensor, attr: int) -> float:
    images = forward_fixed(g, z)
    probs, _ = net.predict(images)
    return float(probs[:, attr].mean())


def shortest_step(
    measure: Callable[[float], float], reached: Callable[[float], bool], max_step: float, iters: int = 5
) -> tuple[float, bool]:
    """The smallest step in [0, max_step] (to max_step / 2^iters) where `reached(measure(step))`, by
    bisection, assuming the measure moves monotonically; (max_step, False) when even that falls short."""
    if not reached(measure(max_step)):
        return max_step, False
    lo, hi = 0.0, max_step
    for _ in range(iters):
        mid = (lo + hi) / 2
        if reached(measure(mid)):
            hi = mid
        else:
            lo = mid
    return hi, True


def calibrate(
    g: nn.Module,
    net: AttributeNet,
    attrs: list[int],
    vectors: torch.Tensor,
    seeds: list[int],
    *,
    lo: float = LO,
    hi: float = HI,
    max_step: float = MAX_STEP,
    iters: int = 5,
    share: float = SHARE,
) -> tuple[torch.Tensor, list[dict[str, float | bool]]]:
    """Steps (K, 2) for directions `vectors` (K, latent) whose attributes are `attrs` (classifier
    indices), and per edit what was reached.

    Each side is calibrated on the faces it must change: +1 on those the classifier says lack the
    attribute (p < 0.5), −1 on those that have it; where fewer than MIN_FACES qualify, on the `share` of
    faces that have it least (most). On all faces a rare attribute such as Eyeglasses is "clearly
    without" at step 0 already, so −1 would do nothing to the faces wearing them."""
    z = latents(seeds, model_config(g).latent_dim)
    probs, _ = net.predict(forward_fixed(g, z))
    count = max(1, round(len(seeds) * share))
    steps, report = [], []
    for attr, d in zip(attrs, vectors):
        p0 = probs[:, attr]
        order = p0.argsort()
        has, lacks = (p0 >= 0.5).nonzero()[:, 0], (p0 < 0.5).nonzero()[:, 0]
        neg = has if len(has) >= MIN_FACES else order[-count:]
        pos = lacks if len(lacks) >= MIN_FACES else order[:count]
        row: list[float] = []
        rec: dict[str, float | bool] = {"p0": round(float(p0.mean()), 4)}
        for sign, target, key, pick in ((-1.0, lo, "neg", neg), (1.0, hi, "pos", pos)):
            part = z[pick]
            rec[f"{key}_faces"] = len(pick)

            def measure(
                step: float,
                sign: float = sign,
                d: torch.Tensor = d,
                attr: int = attr,
                part: torch.Tensor = part,
            ) -> float:
                return mean_probability(g, net, part + (sign * step) * d.reshape(1, -1, 1, 1), attr)

            def reached(p: float, sign: float = sign, target: float = target) -> bool:
                return p <= target if sign < 0 else p >= target

            step, ok = shortest_step(measure, reached, max_step, iters)
            row.append(step)
            rec[f"{key}_start"] = round(float(probs[pick, attr].mean()), 4)
            rec[f"{key}_step"], rec[f"{key}_reached"] = round(step, 4), ok
        steps.append(row)
        report.append(rec)
    return torch.tensor(steps, dtype=torch.float32), report
