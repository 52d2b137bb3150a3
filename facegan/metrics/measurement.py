"""What every metric draws on: the generated faces and real rows of one evaluation, drawn once.

`Measurement` holds one `evaluate` call's inputs (generator or image array, dataset, real split,
counts, device) and hands each metric the faces it needs as prefixes of one shared pass: the pixel
metrics (SWD, C2ST, PRDC) share one set of generated images, the Inception metrics (FID, KID) one set of
features, so asking for several metrics costs one generation each, not one per metric.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from facegan.data.dataset import PackedDataset
from facegan.errors import FaceganError
from facegan.metrics.cache import (
    RealStats,
    cache_key,
    cache_path,
    default_metrics_cache_dir,
    load_real_stats,
    save_real_stats,
)
from facegan.metrics.embedding import FaceEmbedding
from facegan.metrics.inception import FeatureExtractor, extractor_id
from facegan.metrics.protocols import Protocol, real_indices
from facegan.metrics.reference import Reference, embedding_for, rows_digest
from facegan.sampling.generate import faces


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
    g: nn.Module | np.ndarray, seeds: list[int], batch_size: int, truncation: float | None = None
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


@dataclass
class Measurement:
    """One evaluation's inputs and its shared passes (see the module docstring). `pixels_needed` and
    `features_needed` are the largest counts any requested metric takes, so each pass runs once."""

    generator: nn.Module | np.ndarray
    dataset: PackedDataset
    ref: Reference
    seed: int
    num_fake: int | None
    device: str | torch.device
    batch_size: int
    progress: bool
    truncation: float | None
    cancel: Callable[[], bool] | None
    cache_dir: str | Path | None
    extractor: FeatureExtractor | None
    embedding: FaceEmbedding | str | Path | None
    pixels_needed: int = 0
    features_needed: int = 0
    _pixels: torch.Tensor | None = field(default=None, repr=False)
    _features: np.ndarray | None = field(default=None, repr=False)
    _real_stats: dict[int, RealStats] = field(default_factory=dict, repr=False)

    def n_fake(self, p: Protocol) -> int:
        """Generated faces protocol `p` uses: its count (or --num-fake), at most a folder's size."""
        n = self.num_fake if self.num_fake is not None else p.num_fake
        return min(n, len(self.generator)) if isinstance(self.generator, np.ndarray) else n

    def n_pixel(self, p: Protocol) -> int:
        """Faces a pixel metric compares: n fakes with as many reals (capped by the split's size)."""
        return min(self.n_fake(p), len(self.ref.rows))

    def seeds(self, n: int) -> list[int]:
        """The first `n` seeds (a folder's rows start at 0, a generator's at `seed`)."""
        start = 0 if isinstance(self.generator, np.ndarray) else self.seed
        return list(range(start, start + n))

    def generated(self, seeds: list[int]) -> Iterator[torch.Tensor]:
        """uint8 batches of the faces of `seeds`, checking for cancellation between batches."""
        return cancellable(fake_batches(self.generator, seeds, self.batch_size, self.truncation), self.cancel)

    def fake_pixels(self, n: int) -> torch.Tensor:
        """uint8 (n, 3, S, S): the first n generated faces, from the one pixel pass."""
        if self._pixels is None:
            self._pixels = torch.cat(list(self.generated(self.seeds(max(n, self.pixels_needed)))))
        return self._pixels[:n]

    def fake_features(self, n: int) -> np.ndarray:
        """Inception features of the first n generated faces, from the one feature pass."""
        if self._features is None:
            assert self.extractor is not None
            seeds = self.seeds(max(n, self.features_needed))
            self._features = extract_features(
                self.extractor,
                self.generated(seeds),
                device=self.device,
                total=len(seeds),
                desc=f"generated features ({len(seeds)})",
                progress=self.progress,
            )
        return self._features[:n]

    def real_stats(self, max_real: int) -> RealStats:
        """Inception statistics of the real rows a protocol capped at `max_real` uses (cached)."""
        if max_real not in self._real_stats:
            assert self.extractor is not None
            self._real_stats[max_real] = real_stats(
                self.dataset,
                max_real,
                self.extractor,
                device=self.device,
                cache_dir=self.cache_dir,
                batch_size=self.batch_size,
                progress=self.progress,
                cancel=self.cancel,
                ref=self.ref,
            )
        return self._real_stats[max_real]

    def real_rows(self, n: int) -> np.ndarray:
        """Dataset rows of the n reals a pixel metric compares with (a fixed subset of the split)."""
        rows: np.ndarray = self.ref.rows[real_indices(len(self.ref.rows), n)]
        return rows

    def real_batches(self, rows: np.ndarray) -> Iterator[torch.Tensor]:
        """uint8 batches of dataset `rows`, checking for cancellation between batches."""
        return cancellable(real_batches(self.dataset, rows, self.batch_size), self.cancel)

    def face_embedding(self) -> FaceEmbedding:
        """The face embedding PRDC and close pairs use (loaded or trained once per evaluation)."""
        if not isinstance(self.embedding, FaceEmbedding):
            self.embedding = embedding_for(self.dataset, self.embedding, progress=self.progress)
        return self.embedding
