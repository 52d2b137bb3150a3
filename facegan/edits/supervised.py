"""Building supervised edit directions end to end: sample and label faces with the finding classifier,
fit InterFaceGAN normals, orthogonalise (conditional manipulation), optionally refine by gradient
(facegan.edits.refine), calibrate ±1, package."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from facegan.edits.calibrate import HI, LO, MAX_STEP, calibrate
from facegan.edits.classifier import AttributeNet
from facegan.edits.interfacegan import edit_vectors, normals, sample_scores
from facegan.edits.refine import ITERS, KEEP, STEP, refine
from facegan.sampling.directions import Directions

# Seeds used to find (0 …) and to calibrate (CALIBRATION_SEED …); evaluation uses EVAL_SEED … so the
# faces that are measured were used for neither.
CALIBRATION_SEED = 500_000
EVAL_SEED = 1_000_000


@dataclass
class Boundaries:
    """Every attribute's unit normal in z (A, latent), its boundary accuracy, and how they were fitted."""

    normals: torch.Tensor
    accuracy: list[float]
    samples: int
    seconds: float


def fit_boundaries(g: nn.Module, net: AttributeNet, samples: int = 6000) -> Boundaries:
    """Label the faces of seeds 0 … samples-1 with `net` and fit one boundary per attribute."""
    start = time.perf_counter()
    z, logits = sample_scores(g, net, list(range(samples)))
    found, accuracy = normals(z, logits)
    return Boundaries(found, accuracy, samples, time.perf_counter() - start)


def package(
    g: nn.Module,
    net: AttributeNet,
    edits: list[str],
    bounds: Boundaries,
    *,
    conditional: bool,
    calibration: int = 128,
    max_step: float = MAX_STEP,
    conditions: list[str] | None = None,
    refine_iters: int = 0,
) -> Directions:
    """Directions for `edits` from fitted boundaries: when `conditional`, orthogonalised against the
    correlated attributes among `conditions` (default: the other edits); with `refine_iters`, each
    refined by that many gradient steps holding the other edits' attributes; calibrated on
    `calibration` faces not used to fit."""
    start = time.perf_counter()
    vectors, used = edit_vectors(bounds.normals, net.names, edits, conditional, conditions)
    attrs = [net.names.index(e) for e in edits]
    refined_seconds = 0.0
    if refine_iters:
        vectors = torch.stack(
            [
                refine(g, net, v, a, [o for o in attrs if o != a], iters=refine_iters)
                for v, a in zip(vectors, attrs)
            ]
        )
        refined_seconds = time.perf_counter() - start
    seeds = list(range(CALIBRATION_SEED, CALIBRATION_SEED + calibration))
    steps, report = calibrate(g, net, attrs, vectors, seeds, max_step=max_step)
    info: dict[str, object] = {
        "method": ("interfacegan-conditional" if conditional else "interfacegan")
        + ("-refined" if refine_iters else ""),
        "refine": {"iters": refine_iters, "keep": KEEP, "step": STEP, "seconds": round(refined_seconds, 1)}
        if refine_iters
        else None,
        "conditions": conditions if conditional else None,
        "samples": bounds.samples,
        "calibration_faces": calibration,
        "lo": LO,
        "hi": HI,
        "max_step": max_step,
        "boundary_accuracy": {e: round(bounds.accuracy[a], 3) for e, a in zip(edits, attrs)},
        "conditioned_on": used,
        "calibration": dict(zip(edits, report)),
        "fit_seconds": round(bounds.seconds, 1),
        "calibration_seconds": round(time.perf_counter() - start - refined_seconds, 1),
    }
    return Directions(list(edits), vectors, steps, info)


def find_supervised(
    g: nn.Module,
    net: AttributeNet,
    edits: list[str],
    *,
    samples: int = 6000,
    calibration: int = 128,
    conditional: bool = True,
    max_step: float = MAX_STEP,
    conditions: list[str] | None = None,
    refine_iters: int = ITERS,
    log: Callable[[str], None] | None = None,
) -> Directions:
    """Directions for `edits` (attribute names of `net`), found on `samples` generated faces, refined by
    `refine_iters` gradient steps (the measured winner's setting by default; 0 = plain normals) and
    calibrated on `calibration` others."""
    bounds = fit_boundaries(g, net, samples)
    if log:
        log(f"fitted {len(net.names)} boundaries on {samples} faces in {bounds.seconds:.0f}s")
    return package(
        g,
        net,
        edits,
        bounds,
        conditional=conditional,
        calibration=calibration,
        max_step=max_step,
        conditions=conditions,
        refine_iters=refine_iters,
    )
