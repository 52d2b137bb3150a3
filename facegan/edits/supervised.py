"""Building supervised edit directions end to end: sample and label faces with the finding classifier,
fit InterFaceGAN normals, orthogonalise (conditional manipulation), calibrate ±1, package."""

from __future__ import annotations

import time
from typing import Any

from torch import nn

from facegan.edits.calibrate import HI, LO, MAX_STEP, calibrate
from facegan.edits.classifier import AttributeNet
from facegan.edits.directions import Directions
from facegan.edits.interfacegan import edit_vectors, normals, sample_scores

# Seeds used to find (0 …) and to calibrate (CALIBRATION_SEED …); evaluation uses EVAL_SEED … so the
# faces that are measured were used for neither.
CALIBRATION_SEED = 500_000
EVAL_SEED = 1_000_000


def find_supervised(g: nn.Module, net: AttributeNet, edits: list[str], *, samples: int = 6000,
                    calibration: int = 96, conditional: bool = True, max_step: float = MAX_STEP,
                    log: Any = None) -> Directions:
    """Directions for `edits` (attribute names of `net`), found on `samples` generated faces and
    calibrated on `calibration` others."""
    start = time.perf_counter()
    z, logits = sample_scores(g, net, list(range(samples)))
    all_normals, accuracy = normals(z, logits)
    vectors, used = edit_vectors(all_normals, net.names, edits, conditional)
    found = time.perf_counter() - start
    if log:
        log(f"fitted {len(net.names)} boundaries on {samples} faces in {found:.0f}s")
    attrs = [net.names.index(e) for e in edits]
    seeds = list(range(CALIBRATION_SEED, CALIBRATION_SEED + calibration))
    steps, report = calibrate(g, net, attrs, vectors, seeds, max_step=max_step)
    info = {"method": "interfacegan-conditional" if conditional else "interfacegan",
            "samples": samples, "calibration_faces": calibration, "lo": LO, "hi": HI, "max_step": max_step,
            "boundary_accuracy": {e: round(accuracy[a], 3) for e, a in zip(edits, attrs)},
            "conditioned_on": used, "calibration": dict(zip(edits, report)),
            "seconds": round(time.perf_counter() - start, 1)}
    return Directions(list(edits), vectors, steps, info)
