"""One call that measures a generator against a prepared dataset, for the CLI and training loop."""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from facegan.data.dataset import PackedDataset
from facegan.errors import FaceganError
from facegan.metrics.c2st import c2st
from facegan.metrics.cache import (
    RealStats,
    cache_key,
    cache_path,
    default_metrics_cache_dir,
    load_real_stats,
    save_real_stats,
)
from facegan.metrics.embedding import FaceEmbedding
from facegan.metrics.frechet import frechet_distance, gaussian_stats
from facegan.metrics.inception import FeatureExtractor, extractor_id, inception_extractor
from facegan.metrics.kid import kid
from facegan.metrics.prdc import embed, prdc
from facegan.metrics.protocols import Protocol, parse_metrics, real_indices
from facegan.metrics.reference import Reference, embedding_for, reference, rows_digest
from facegan.metrics.swd import swd
from facegan.networks.dcgan import Generator
from facegan.sampling.generate import check_truncation, faces

METRICS_FILE = "metrics.jsonl"


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] → uint8 [0, 255]: the inverse of the data normalisation."""
    x = torch.nan_to_num(images.float(), nan=0.0)
    return x.add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)


class EvaluationCancelled(Exception):
    """Raised inside `evaluate` when its `cancel` callback says stop (e.g. training got SIGTERM)."""


def check_cancel(cancel: Callable[[], bool] | None) -> None:
    """Raise EvaluationCancelled when `cancel()` says so."""
    if cancel is not None and cancel():
        raise EvaluationCancelled


def cancellable(batches: Iterable[torch.Tensor], cancel: Callable[[], bool] | None) -> Iterator[torch.Tensor]:
    """`batches`, asking `cancel()` before each one (see `check_cancel`)."""
    for batch in batches:
        check_cancel(cancel)
        yield batch


def real_batches(ds: PackedDataset, indices: np.ndarray, batch_size: int) -> Iterator[torch.Tensor]:
    """uint8 (B, 3, S, S) batches of the dataset rows `indices`, read from the memory map lazily."""
    for start in range(0, len(indices), batch_size):
        yield torch.from_numpy(np.ascontiguousarray(ds.images[indices[start : start + batch_size]]))


def fake_batches(
    g: Generator | np.ndarray, seeds: list[int], batch_size: int, truncation: float | None = None
) -> Iterator[torch.Tensor]:
    """uint8 (B, 3, S, S) batches of generated faces, one per seed (seed → fixed face); for an image
    array (`evaluate --fakes`) the "seeds" are its rows."""
    for start in range(0, len(seeds), batch_size):
        if isinstance(g, np.ndarray):
            yield torch.from_numpy(np.ascontiguousarray(g[seeds[start : start + batch_size]]))
        else:
            yield to_uint8(faces(g, seeds[start : start + batch_size], batch_size, truncation))


def extract_features(
    extractor: FeatureExtractor,
    batches: Iterable[torch.Tensor],
    *,
    device: str | torch.device = "cpu",
    total: int | None = None,
    desc: str = "features",
    progress: bool = False,
) -> np.ndarray:
    """Run every uint8 batch through `extractor` on `device`; float32 features (N, D) on the CPU."""
    out: list[np.ndarray] = []
    bar = tqdm(total=total, unit="img", desc=desc, disable=not progress, file=sys.stderr, dynamic_ncols=True)
    with bar, torch.inference_mode():
        for batch in batches:
            feats = extractor(batch.to(device))
            ok = isinstance(feats, torch.Tensor) and feats.dim() == 2 and len(feats) == len(batch)
            if not ok:
                is_tensor = isinstance(feats, torch.Tensor)
                got = tuple(feats.shape) if is_tensor else type(feats).__name__
                raise ValueError(f"feature extractor must return (B, D) for B={len(batch)}, got {got}")
            out.append(feats.detach().float().cpu().numpy())
            bar.update(len(batch))
    return np.concatenate(out)


def real_stats(
    ds: PackedDataset,
    max_real: int,
    extractor: FeatureExtractor,
    *,
    device: str | torch.device = "cpu",
    cache_dir: str | Path | None = None,
    batch_size: int = 256,
    progress: bool = False,
    cancel: Callable[[], bool] | None = None,
    ref: Reference | None = None,
) -> RealStats:
    """Features and statistics of the real images a protocol with cap `max_real` uses (of the rows of
    `ref`, default all), from the cache when available (see facegan.metrics.cache); extractors without
    an id are not cached."""
    ext_id = extractor_id(extractor)
    rows = ref.rows if ref is not None else np.arange(len(ds))
    key = path = None
    if ext_id is not None:
        key = cache_key(ds.content_hash, max_real, ext_id)
        if ref is not None and ref.split != "all":  # the old key still names "all images", so it stays valid
            key["rows"] = f"{ref.split}-{rows_digest(rows)}"
        folder = Path(cache_dir) if cache_dir is not None else default_metrics_cache_dir()
        path = cache_path(folder, key)
        cached = load_real_stats(path, key)
        if cached is not None:
            return cached
    idx = rows[real_indices(len(rows), max_real)]
    feats = extract_features(
        extractor,
        cancellable(real_batches(ds, idx, batch_size), cancel),
        device=device,
        total=len(idx),
        desc=f"real features ({len(idx)})",
        progress=progress,
    )
    stats = RealStats.from_features(feats)
    if key is not None and path is not None:
        try:
            save_real_stats(path, key, stats)
        except FaceganError as err:  # a read-only cache must not cost the user the numbers just computed
            warnings.warn(f"real features not cached: {err}", stacklevel=2)
    return stats


def evaluate(
    generator: Generator | np.ndarray,
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
    if batch_size < 1:
        raise FaceganError(f"--batch-size must be >= 1, got {batch_size}")
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

    feature_protocols = [p for p in protocols if p.kind in ("fid", "kid")]
    extractor = feature_extractor
    if feature_protocols and extractor is None:
        # Before any other work, so missing weights fail fast.
        extractor = inception_extractor(inception_weights, device)

    def n_fake(p: Protocol) -> int:
        n = num_fake if num_fake is not None else p.num_fake
        # A folder of fakes has N images: every protocol uses at most that many.
        return min(n, len(generator)) if isinstance(generator, np.ndarray) else n

    def first_seeds(n: int) -> list[int]:  # a folder's rows start at 0, a generator's at `seed`
        start = 0 if isinstance(generator, np.ndarray) else seed
        return list(range(start, start + n))

    def generated(seeds: list[int]) -> Iterator[torch.Tensor]:
        return cancellable(fake_batches(generator, seeds, batch_size, truncation), cancel)

    results: dict[str, float] = {"real_heldout": float(ref.split == "heldout")}
    was_training = isinstance(generator, torch.nn.Module) and generator.training
    if isinstance(generator, torch.nn.Module):
        generator.eval()
    try:
        if feature_protocols:
            assert extractor is not None
            # One generated pass serves every FID/KID protocol: each takes a prefix of the seeds.
            seeds = first_seeds(max(n_fake(p) for p in feature_protocols))
            fake = extract_features(
                extractor,
                generated(seeds),
                device=device,
                total=len(seeds),
                desc=f"generated features ({len(seeds)})",
                progress=progress,
            )
            reals: dict[int, RealStats] = {}
            for p in feature_protocols:
                if p.max_real not in reals:
                    reals[p.max_real] = real_stats(
                        dataset,
                        p.max_real,
                        extractor,
                        device=device,
                        cache_dir=cache_dir,
                        batch_size=batch_size,
                        progress=progress,
                        cancel=cancel,
                        ref=ref,
                    )
                real, f = reals[p.max_real], fake[: n_fake(p)]
                results[f"{p.name}_real_n"] = float(len(real.features))
                if p.kind == "fid":
                    results[p.name] = frechet_distance(real.mu, real.sigma, *gaussian_stats(f))
                else:
                    size = min(p.kid_subset_size, len(real.features), len(f))
                    feats_real = torch.from_numpy(real.features).to(device)
                    mean, std = kid(feats_real, f, p.kid_subsets, size, seed=seed)
                    results[f"{p.name}_mean"], results[f"{p.name}_std"] = mean, std
        # The pixel-space measures (SWD, C2ST, PRDC) all use the faces of seeds `seed`, `seed`+1, …,
        # each a prefix of them, so one generated pass serves all three (it was one pass each).
        pixel_protocols = [p for p in protocols if p.kind in ("swd", "c2st", "prdc")]
        # Each compares n fakes with n reals (n capped by the split's size).
        n_pixel = max((min(n_fake(p), len(ref.rows)) for p in pixel_protocols), default=0)
        fake_img = torch.cat(list(generated(first_seeds(n_pixel)))) if n_pixel else None
        for p in pixel_protocols:
            assert fake_img is not None
            n = min(n_fake(p), len(ref.rows))
            real_rows = ref.rows[real_indices(len(ref.rows), n)]
            results[f"{p.name}_real_n"] = float(n)
            if p.kind == "swd":
                real_img = torch.from_numpy(dataset.images[real_rows])
                results.update(
                    {
                        k.replace("swd", p.name, 1): v
                        for k, v in swd(real_img, fake_img[:n], seed=seed).items()
                    }
                )
            if p.kind == "c2st":
                real_img = dataset.images[real_rows]
                res = c2st(
                    real_img, fake_img[:n], seed=seed, device=device, check=lambda: check_cancel(cancel)
                )
                results[f"{p.name}_acc"], results[f"{p.name}_se"] = res.accuracy, res.stderr
                results[f"{p.name}_n"] = float(res.n_test)
            if p.kind == "prdc":
                if not isinstance(embedding, FaceEmbedding):
                    embedding = embedding_for(dataset, embedding, progress=progress)
                net = embedding.to(device)
                reals = cancellable(real_batches(dataset, real_rows, batch_size), cancel)
                real_feats = embed(net, reals)
                fake_feats = embed(net, cancellable(fake_img[:n].split(batch_size), cancel))
                results.update({f"{p.name}_{k}": v for k, v in prdc(real_feats, fake_feats).items()})
    finally:
        if isinstance(generator, torch.nn.Module):
            generator.train(was_training)
    if num_fake is not None or isinstance(generator, np.ndarray):
        results["num_fake"] = float(num_fake if num_fake is not None else len(generator))
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
