"""On-disk cache of real-set features and their Gaussian statistics.

The real pass (tens of thousands of Inception forwards) dominates an evaluation, and its result
depends only on the data, the real-image selection and the feature extractor; so it is computed once
per (dataset content hash, real-set cap, extractor id) and reused by every later evaluation, in any
run.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facegan.metrics.frechet import gaussian_stats
from facegan.storage.files import atomic_write, cache_root

CACHE_VERSION = 1


@dataclass(frozen=True)
class RealStats:
    """Features (N, D) float32 of the selected real images, with mean and covariance (float64)."""

    features: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray

    @classmethod
    def from_features(cls, features: np.ndarray) -> RealStats:
        mu, sigma = gaussian_stats(features)
        return cls(np.ascontiguousarray(features, dtype=np.float32), mu, sigma)


def default_metrics_cache_dir() -> Path:
    """metrics/ under facegan's cache root ($FACEGAN_CACHE, else $XDG_CACHE_HOME/facegan)."""
    return cache_root() / "metrics"


def cache_key(content_hash: str, max_real: int, extractor_id: str) -> dict[str, object]:
    """Everything the cached real features depend on (stored in the file and checked on load)."""
    return {
        "version": CACHE_VERSION,
        "content_hash": content_hash,
        "max_real": max_real,
        "extractor": extractor_id,
    }


def cache_path(cache_dir: Path, key: dict[str, object]) -> Path:
    """Readable, collision-safe name: data hash, real cap, extractor, plus a digest of the key."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    data = str(key["content_hash"]).split(":")[-1][:12]
    ext = re.sub(r"[^A-Za-z0-9._-]+", "_", str(key["extractor"]))[:60]
    return cache_dir / f"real-{data}-n{key['max_real']}-{ext}-{digest}.npz"


def load_real_stats(path: Path, key: dict[str, object]) -> RealStats | None:
    """The cached stats at `path` if present, readable and made for exactly `key`; else None."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if json.loads(str(z["key"])) != key:
                return None
            return RealStats(z["features"], z["mu"], z["sigma"])
    except (OSError, ValueError, KeyError):
        return None  # a truncated or foreign file: recompute and overwrite it


def save_real_stats(path: Path, key: dict[str, object], stats: RealStats) -> None:
    """Atomic write (facegan.storage.files): concurrent or interrupted runs never see half a file; a failed
    write raises one FaceganError line and leaves any earlier file as it was."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                key=np.array(json.dumps(key, sort_keys=True)),
                features=stats.features,
                mu=stats.mu,
                sigma=stats.sigma,
            )

    atomic_write(path, write)
