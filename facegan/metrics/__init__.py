"""Quality you can measure: FID and KID under named protocols, and a download-free C2ST.

    from facegan.metrics import evaluate, append_metrics
    results = evaluate(g, PackedDataset("data/celeba64"), ["fid10k", "kid10k", "c2st"])
    append_metrics("runs/exp1", step, results)

FID/KID use the standard FID Inception weights from a local file (never downloaded; see
facegan.metrics.inception) or any pluggable feature extractor; real features are cached per dataset.
"""

from __future__ import annotations

from facegan.metrics.c2st import C2STResult, c2st
from facegan.metrics.cache import RealStats, default_metrics_cache_dir
from facegan.metrics.evaluate import (
    METRICS_FILE,
    append_metrics,
    evaluate,
    extract_features,
    real_stats,
    to_uint8,
)
from facegan.metrics.frechet import frechet_distance, gaussian_stats
from facegan.metrics.inception import (
    WEIGHTS_ENV,
    WEIGHTS_FILE,
    WEIGHTS_URL,
    FeatureExtractor,
    InceptionFeatures,
    inception_extractor,
    resolve_weights,
)
from facegan.metrics.kid import kid, mmd2_unbiased
from facegan.metrics.protocols import PROTOCOLS, Protocol, parse_metrics
from facegan.metrics.swd import sliced_wasserstein, swd

__all__ = [
    "METRICS_FILE",
    "PROTOCOLS",
    "WEIGHTS_ENV",
    "WEIGHTS_FILE",
    "WEIGHTS_URL",
    "C2STResult",
    "FeatureExtractor",
    "InceptionFeatures",
    "Protocol",
    "RealStats",
    "append_metrics",
    "c2st",
    "default_metrics_cache_dir",
    "evaluate",
    "extract_features",
    "frechet_distance",
    "gaussian_stats",
    "inception_extractor",
    "kid",
    "mmd2_unbiased",
    "parse_metrics",
    "real_stats",
    "resolve_weights",
    "sliced_wasserstein",
    "swd",
    "to_uint8",
]
