"""One call that measures a generator against a prepared dataset, for the CLI and training loop."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

import facegan.metrics.measures  # noqa: F401  (registers the built-in metrics)
from facegan.data.dataset import PackedDataset
from facegan.data.shard import check_batch_size
from facegan.errors import FaceganError
from facegan.metrics.embedding import FaceEmbedding
from facegan.metrics.inception import FeatureExtractor, inception_extractor
from facegan.metrics.measurement import (  # re-exported: callers import them from here
    EvaluationCancelled,
    Measurement,
    extract_features,
    fake_batches,
    real_stats,
    to_uint8,
)
from facegan.metrics.protocols import parse_metrics
from facegan.metrics.reference import reference
from facegan.metrics.registry import METRICS
from facegan.sampling.generate import check_truncation

__all__ = [
    "METRICS_FILE",
    "EvaluationCancelled",
    "append_metrics",
    "evaluate",
    "extract_features",
    "fake_batches",
    "real_stats",
    "to_uint8",
]

METRICS_FILE = "metrics.jsonl"


def evaluate(
    generator: nn.Module | np.ndarray,
    dataset: PackedDataset,
    metrics: list[str],
    *,
    num_fake: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    inception_weights: str | None = None,
    cache_dir: str | Path | None = None,
    feature_extractor: FeatureExtractor | None = None,
    batch_size: int = 256,
    progress: bool = False,
    truncation: float | None = None,
    cancel: Callable[[], bool] | None = None,
    real_split: str = "auto",
    embedding: FaceEmbedding | str | Path | None = None,
) -> dict[str, float]:
    """Measure `generator` against `dataset` under named protocols (see facegan.metrics.PROTOCOLS).

    Returns e.g. {"fid10k": …, "kid10k_mean": …, "kid10k_std": …, "c2st_acc": …, "c2st_se": …,
    "c2st_n": …}. Generated images are the faces of seeds `seed`, `seed`+1, … (shared by all
    metrics), so the same generator always gets the same numbers. `num_fake` replaces every
    protocol's generated count (and C2ST's per-class count) for quick checks; the numbers are then
    not comparable with the named protocol, and the result carries "num_fake". `seed` also seeds
    KID's subsets and C2ST. `truncation` measures the faces `facegan generate --truncation` makes
    (the result then carries it); by default the full distribution.

    FID/KID use the standard Inception network (weights from `inception_weights`,
    $FACEGAN_INCEPTION_WEIGHTS or the torch hub cache; a missing file raises FaceganError before
    any work) unless `feature_extractor` is given: any callable uint8 (B, 3, H, W) → (B, D). Real
    features are cached in `cache_dir` (default $FACEGAN_CACHE/metrics). The generator keeps its
    device and is put in eval mode for the call (its previous mode is restored); `device` runs the
    extractor and the C2ST classifier. Torch's global RNG is left untouched, so a training run can
    evaluate mid-way; such a caller should build `inception_extractor(path, device)` once and pass
    it as `feature_extractor` (its `extractor_id` keeps the cache valid) rather than reload it.
    `cancel` is asked between batches; when it returns True, EvaluationCancelled is raised within one
    batch's work (a training run passes its stop flag, so SIGTERM never waits for a whole evaluation).

    Real images are the rows of `real_split` (facegan.metrics.reference: by default the held-out split,
    or all images for data prepared without one); the result carries "real_heldout" (1/0) and each
    protocol's real count "<name>_real_n". `generator` may instead be a uint8 image array (N, 3, S, S)
    (`facegan evaluate --fakes`): then each protocol uses up to N of them, and the result carries
    "num_fake". PRDC runs in the face embedding `embedding` (a FaceEmbedding or a file), by default
    `embedding_for(dataset)`.
    """
    protocols = parse_metrics(metrics)
    if num_fake is not None and num_fake < 2:
        raise FaceganError(f"--num-fake must be >= 2, got {num_fake}")
    if seed < 0:
        raise FaceganError(f"--seed must be >= 0 (the first generated face's seed), got {seed}")
    check_batch_size(batch_size)
    check_truncation(truncation)  # before any work
    ref = reference(dataset, real_split)
    if len(ref.rows) < 2:
        raise FaceganError(f"the {ref.split} split has {len(ref.rows)} image(s); metrics need at least 2")
    if len(dataset) < 2:
        raise FaceganError(f"the dataset has {len(dataset)} image(s); metrics need at least 2")
    made = int(generator.shape[-1]) if isinstance(generator, np.ndarray) else generator.cfg.size
    if dataset.size != made:
        raise FaceganError(
            f"the dataset is {dataset.size}px but the generator makes {made}px "
            f"images; evaluate against data prepared at --size {made}"
        )

    kinds = [METRICS[p.kind] for p in protocols]
    extractor = feature_extractor
    if extractor is None and any(k.needs == "inception" for k in kinds):
        # Before any other work, so missing weights fail fast.
        extractor = inception_extractor(inception_weights, device)
    m = Measurement(
        generator,
        dataset,
        ref,
        seed,
        num_fake,
        device,
        batch_size,
        progress,
        truncation,
        cancel,
        cache_dir,
        extractor,
        embedding,
    )
    # One generated pass per kind of input, sized for the largest protocol that reads it; the Inception
    # metrics run first, then the pixel ones, each in the order asked.
    pairs = list(zip(protocols, kinds))
    m.features_needed = max((m.n_fake(p) for p, k in pairs if k.needs == "inception"), default=0)
    m.pixels_needed = max((m.n_pixel(p) for p, k in pairs if k.needs == "pixels"), default=0)
    order = sorted(pairs, key=lambda pk: pk[1].needs != "inception")
    results: dict[str, float] = {"real_heldout": float(ref.split == "heldout")}
    was_training = isinstance(generator, torch.nn.Module) and generator.training
    if isinstance(generator, torch.nn.Module):
        generator.eval()
    try:
        for p, k in order:
            results.update(k.measure(m, p))
    finally:
        if isinstance(generator, torch.nn.Module):
            generator.train(was_training)
    if num_fake is not None or isinstance(generator, np.ndarray):
        given = len(generator) if isinstance(generator, np.ndarray) else 0
        results["num_fake"] = float(num_fake if num_fake is not None else given)
        if isinstance(generator, np.ndarray):
            results["num_fake"] = float(min(results["num_fake"], len(generator)))
    if truncation is not None:
        results["truncation"] = float(truncation)
    return results


def append_metrics(
    run_dir: str | Path, step: int, results: dict[str, float], *, kimg: float | None = None
) -> Path:
    """Append {"step", "kimg"?, "time", **results} as one JSON line to `run_dir`/metrics.jsonl.

    `time` is Unix time in seconds. Non-finite values (a diverged run) are written as null, since
    NaN/Infinity are not valid JSON and would break other readers of the file.
    """
    record: dict[str, object] = {"step": int(step)}
    if kimg is not None:
        record["kimg"] = round(float(kimg), 3)
    record["time"] = round(time.time(), 3)
    for name, value in results.items():
        record[name] = float(value) if math.isfinite(value) else None
    path = Path(run_dir) / METRICS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
    return path
