"""Named evaluation protocols: how many generated and real images each metric uses.

A number is only comparable with another computed under the same protocol on the same prepared
dataset (same content hash); the protocol name is therefore the key under which results are logged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facegan.errors import FaceganError

# The real subset (when a dataset is larger than a protocol's cap) is drawn with this fixed seed, so
# it depends only on the data and the protocol, and cached real features stay valid across runs.
REAL_SUBSET_SEED = 20151205


@dataclass(frozen=True)
class Protocol:
    """One named metric setting.

    kind: which measure. num_fake: generated images (for "c2st": images per class).
    max_real: real images used: the whole prepared set up to this many, else a fixed random subset.
    kid_subsets / kid_subset_size: KID's subset sampling (torch-fidelity's defaults).
    """

    name: str
    kind: str  # the registered measure (facegan.metrics.registry.METRICS)
    num_fake: int
    max_real: int
    summary: str
    kid_subsets: int = 100
    kid_subset_size: int = 1000


# Every named protocol, filled in by facegan.metrics.registry.register_metric (the built-in ones in
# facegan.metrics.measures, imported by the package).
PROTOCOLS: dict[str, Protocol] = {}


# How to read each figure: what it measures (fidelity, diversity, or both in one distance) and which way
# is better. Precision and density carry a warning: measured on CelebA 64 px, Gaussian pixel noise
# (sigma 32/255) *raises* them above the reals' own (0.983 vs 0.963), so they are overlap with the real
# manifold, not a quality score; blur lowers them in the trained embedding (0.943 vs 0.963).
READINGS: dict[str, str] = {
    "fid": "fidelity and diversity in one distance; lower is better",
    "kid_mean": "fidelity and diversity in one distance; lower is better",
    "swd": "fidelity and diversity (7x7 patch statistics) in one distance; lower is better",
    "c2st_acc": "fidelity: a classifier's accuracy at telling fakes from reals; 0.5 is ideal",
    "prdc_precision": "fidelity: share of fakes inside the reals' k-NN balls; near the reals' own value is "
    "ideal (noise raises it, so higher is not better)",
    "prdc_density": "fidelity: k-NN ball hits per fake / k; about 1 for reals (noise raises it)",
    "prdc_recall": "diversity: share of reals inside the fakes' k-NN balls; higher is better",
    "prdc_coverage": "diversity: share of reals with a fake in their k-NN ball; higher is better",
    "prdc_close_pairs_ratio": "diversity: near-duplicate pairs among the fakes ÷ among as many reals "
    "(close = under the reals' 1 % pair-distance quantile); about 1 is ideal, higher repeats faces",
    "nearest_ratio": "memorisation: median distance to training / to held-out faces; about 1 is healthy, "
    "towards 0 means copying",
}


def readings(results: dict[str, float]) -> dict[str, str]:
    """For each figure in `results` that has one, how to read it (see READINGS)."""
    out = {}
    for key in results:
        name, _, tail = key.partition("_")
        kind = PROTOCOLS[name].kind if name in PROTOCOLS else name
        candidate = f"{kind}_{tail}" if tail else kind
        if candidate in READINGS:
            out[key] = READINGS[candidate]
    return out


def get_protocol(name: str) -> Protocol:
    """The protocol called `name`; FaceganError listing the valid names otherwise."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise FaceganError(f"unknown metric {name!r}; choose from: {', '.join(PROTOCOLS)}") from None


def parse_metrics(spec: str | list[str]) -> list[Protocol]:
    """'fid10k,kid10k' or ['fid10k', 'c2st'] → protocols, in order, without duplicates."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [n.strip().lower() for n in names if n.strip()]
    if not names:
        raise FaceganError(f"no metrics given; choose from: {', '.join(PROTOCOLS)}")
    return [get_protocol(n) for n in dict.fromkeys(names)]


def real_indices(count: int, max_real: int) -> np.ndarray:
    """Indices of the real images a protocol uses: all of them, or a fixed sorted random subset."""
    if count <= max_real:
        return np.arange(count)
    rng = np.random.default_rng(REAL_SUBSET_SEED)
    # Sorted so reads from the memory-mapped array go forward through the file.
    return np.sort(rng.choice(count, size=max_real, replace=False))
