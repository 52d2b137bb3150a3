"""Training-time data: a prepared dataset opened as a memory map, and the batch of every step.

A prepared dataset (images.u8 + manifest.json, written by facegan.data.prepare) is read in place, never
decoded again. `resolve_dataset` opens one, or prepares a folder, zip or "synthetic" into the cache
first (facegan.data.prepare.prepare_cached). `BatchSource` maps a step to its batch.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facegan.config.schema import SIZES
from facegan.data.attributes import ATTRIBUTES
from facegan.data.prepare import IMAGES, MANIFEST, is_prepared, prepare_cached
from facegan.data.shard import Shard, check_batch_fits
from facegan.data.sources import SYNTHETIC
from facegan.errors import FaceganError


class PackedDataset:
    """A prepared dataset opened as a read-only memory map (no copy into RAM).

    The manifest is checked against the data before anything uses it (shape, count, size, dtype and
    the files' byte sizes), so an altered dataset is one clear error here, not a deep one in training.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        try:
            self.manifest: dict[str, Any] = json.loads((self.root / MANIFEST).read_text())
            shape = _checked_shape(self.manifest)
            # memmap accepts a longer file: a replaced or appended-to images.u8 must not pass as pixels.
            _check_bytes(self.root / IMAGES, int(np.prod(shape)), f"the manifest's shape {list(shape)}")
            self.images = np.memmap(self.root / IMAGES, dtype=np.uint8, mode="r", shape=shape)
            self._attributes = _read_attributes(self.root, self.manifest.get("attributes"), shape[0])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise FaceganError(
                f"{str(self.root)!r} is not a readable prepared dataset ({err}); "
                f"re-create it with `facegan prepare`"
            ) from None
        self.count, self.size = int(shape[0]), int(shape[2])
        self.heldout_rows = self._heldout_rows()

    def _heldout_rows(self) -> np.ndarray:
        """The manifest's held-out rows (facegan.data.prepare.heldout_split); empty for a dataset prepared
        before splits existed, which then trains and is measured on all of its images."""
        split = self.manifest.get("split")
        if split is None:
            return np.zeros(0, dtype=np.int64)
        try:
            rows = np.asarray(split["heldout"], dtype=np.int64)
            if (
                rows.ndim != 1
                or (rows.size and (rows.min() < 0 or rows.max() >= self.count))
                or np.unique(rows).size != rows.size
            ):
                raise ValueError("rows out of range or repeated")
        except (KeyError, TypeError, ValueError) as err:
            raise FaceganError(
                f"{str(self.root)!r} has a malformed held-out split ({err}); re-create it "
                f"with `facegan prepare --force`"
            ) from None
        return np.sort(rows)

    @property
    def has_split(self) -> bool:
        """Whether the dataset holds out images from training (see `heldout_rows`)."""
        return self.heldout_rows.size > 0

    @property
    def train_rows(self) -> np.ndarray:
        """Rows training uses by default: all but the held-out ones."""
        keep = np.ones(self.count, dtype=bool)
        keep[self.heldout_rows] = False
        return np.flatnonzero(keep)

    @property
    def content_hash(self) -> str:
        return str(self.manifest["content_hash"])

    @property
    def attributes(self) -> tuple[list[str], torch.Tensor] | None:
        """(attribute names, int8 labels of shape (N, A): 1 yes, -1 no, 0 no label), row i for image i;
        None when the dataset was prepared without an attribute file."""
        if self._attributes is None:
            return None
        names, labels = self._attributes
        return list(names), torch.from_numpy(labels.copy())

    def __len__(self) -> int:
        return self.count


def _checked_shape(man: Any) -> tuple[int, int, int, int]:
    """The manifest's image array shape, once it agrees with its count, size, dtype and layout."""
    if not isinstance(man, dict):
        raise ValueError("its manifest is not a JSON object")
    shape = man["shape"]
    if not (
        isinstance(shape, list)
        and len(shape) == 4
        and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)
    ):
        raise ValueError(f"its shape {shape!r} is not 4 positive integers")
    n, channels, height, width = shape
    if man.get("dtype", "uint8") != "uint8" or man.get("layout", "NCHW") != "NCHW":
        raise ValueError(f"its dtype/layout {man.get('dtype')!r}/{man.get('layout')!r} is not uint8/NCHW")
    if channels != 3:
        raise ValueError(f"its shape {shape} has {channels} channels, not 3 colour channels")
    if height != width:
        raise ValueError(f"its shape {shape} is not of square images")
    if n != man["count"] or ("files" in man and len(man["files"]) != n):
        raise ValueError(
            f"its shape {shape} does not match the manifest's count {man['count']!r} "
            f"({len(man.get('files', []))} files listed)"
        )
    if height != man["size"] or height not in SIZES:
        raise ValueError(
            f"its shape {shape} does not match the manifest's size {man['size']!r} (one of {SIZES})"
        )
    return n, channels, height, width


def _check_bytes(path: Path, need: int, what: str) -> None:
    have = path.stat().st_size
    if have != need:
        raise ValueError(f"{path.name} holds {have} bytes, {what} needs {need}")


def _read_attributes(root: Path, entry: Any, count: int) -> tuple[list[str], np.ndarray] | None:
    """The labels stored beside the images, checked against the manifest's "attributes" entry."""
    if entry is None:
        return None
    names = entry["names"]
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        raise ValueError("its attribute names are not a list of strings")
    if entry["shape"] != [count, len(names)]:
        raise ValueError(
            f"its attribute shape {entry['shape']!r} does not fit {count} images and {len(names)} names"
        )
    _check_bytes(root / ATTRIBUTES, count * len(names), f"{count} images × {len(names)} attributes")
    labels = np.fromfile(root / ATTRIBUTES, dtype=np.int8).reshape(count, len(names))
    return names, labels


def resolve_dataset(
    data: str,
    size: int,
    *,
    synthetic_count: int = 8192,
    seed: int = 0,
    cache_dir: Path | None = None,
    quiet: bool = False,
) -> PackedDataset:
    """Open `data` as a PackedDataset, preparing folders, zips and "synthetic" into a cache once."""
    if data != SYNTHETIC and is_prepared(data):
        ds = PackedDataset(data)
        if ds.size != size:
            raise FaceganError(
                f"dataset {data!r} was prepared at {ds.size}px but the model is {size}px; "
                f"pass --size {ds.size} or prepare the data again with --size {size}"
            )
        return ds
    return PackedDataset(
        prepare_cached(
            data, size, synthetic_count=synthetic_count, seed=seed, cache_dir=cache_dir, quiet=quiet
        )
    )


class BatchSource:
    """Maps a global step to its training batch: stateless, so resume at any step is exact.

    Epoch e visits the images in `permutation(seed, e)`; step s is batch s % steps_per_epoch of epoch
    s // steps_per_epoch (the last incomplete batch is dropped so BatchNorm never sees a tiny batch).

    With `resident`, the uint8 array is copied to the device once (CelebA at 64² is 2.5 GB) and each
    batch is a gather + normalise there: no per-step host work, no host→device copy. Otherwise each
    batch is one fancy-index gather out of the memory map (no full copy in host RAM).

    `batch_size` is the global batch. A torchrun rank's `shard(rank, world)` returns rows
    [rank·B/N, (rank+1)·B/N) of the same global batch: the order and the flips are drawn per dataset
    position from (seed, epoch), so which images a step trains on never depends on the number of ranks.
    """

    def __init__(
        self,
        ds: PackedDataset,
        batch_size: int,
        seed: int,
        device: torch.device,
        hflip: bool = False,
        resident: bool = False,
        channels_last: bool = False,
        include_heldout: bool = False,
    ) -> None:
        # The held-out split is for measuring; training sees it only when asked (`include_heldout`).
        self.rows_used = np.arange(len(ds)) if include_heldout else ds.train_rows
        n = len(self.rows_used)
        check_batch_fits(batch_size, n, len(ds) - n)
        self.ds, self.batch_size, self.seed, self.device, self.hflip = ds, batch_size, seed, device, hflip
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.steps_per_epoch = n // batch_size
        self.rows = slice(0, batch_size)  # this process's rows of each global batch
        self._epoch = -1
        self._order = torch.empty(0, dtype=torch.long)
        self._flip = torch.empty(0, dtype=torch.bool)
        self.images: torch.Tensor | None = _to_device(ds.images, device) if resident else None

    def shard(self, rank: int, world: int) -> BatchSource:
        """The same batches, of which this source yields rank `rank`'s B/`world` rows (the resident
        images, if any, are shared, not copied)."""
        part = copy.copy(self)
        part.rows = Shard.of(rank, world, self.batch_size).rows
        return part

    def _load_epoch(self, epoch: int) -> None:
        rng = np.random.default_rng((self.seed, epoch))
        where = self.device if self.images is not None else torch.device("cpu")
        n = len(self.rows_used)  # == len(ds) without a split: the same order as before splits existed
        self._order = torch.from_numpy(self.rows_used[rng.permutation(n)]).to(where)
        self._flip = torch.from_numpy(rng.random(n) < 0.5).to(self.device)
        self._epoch = epoch

    def batch(self, step: int) -> torch.Tensor:
        """Normalised float batch (B, 3, S, S) in [-1, 1] on the device, for global `step`."""
        epoch, pos = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self._load_epoch(epoch)
        start = pos * self.batch_size
        sl = slice(start + self.rows.start, start + self.rows.stop)
        idx = self._order[sl]
        if self.images is not None:
            pixels = self.images.index_select(0, idx)  # (B, 3, S, S) uint8, on the device
        else:
            pixels = torch.from_numpy(self.ds.images[idx.numpy()])  # one gather out of the memmap
            if self.device.type == "cuda":
                pixels = pixels.pin_memory()
            pixels = pixels.to(self.device, non_blocking=True)
        x = pixels.to(memory_format=self.memory_format).float().div_(127.5).sub_(1.0)
        if self.hflip:
            flip = self._flip[sl]
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        return x


def _to_device(images: np.ndarray, device: torch.device, chunk: int = 4096) -> torch.Tensor:
    """Copy a memory-mapped uint8 array to `device` in chunks, so host RAM never holds a second copy."""
    out = torch.empty(images.shape, dtype=torch.uint8, device=device)
    for start in range(0, len(images), chunk):
        part = torch.from_numpy(np.array(images[start : start + chunk]))  # one bounded chunk in RAM
        out[start : start + chunk].copy_(part)
    return out


def real_sample(ds: PackedDataset, n: int, seed: int = 0) -> torch.Tensor:
    """`n` real images in [-1, 1] (CPU), picked reproducibly, for figures."""
    idx = np.sort(np.random.default_rng(seed).choice(len(ds), size=min(n, len(ds)), replace=False))
    return torch.from_numpy(ds.images[idx]).float().div_(127.5).sub_(1.0)
