"""Datasets: prepare images into a packed uint8 array, and draw training batches from it.

A prepared dataset is a folder holding
  images.u8      raw uint8 array, shape (N, 3, S, S), C order — np.memmap-able, no decoding at train time
  manifest.json  source, count, size, crop rule, content hash, ordered file list, every skipped file

Sources: an image folder (searched recursively), a zip archive read in place, or "synthetic".
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision import transforms
from tqdm import tqdm

from facegan.config import check_size
from facegan.errors import FaceganError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm")
MANIFEST = "manifest.json"
IMAGES = "images.u8"
FORMAT_VERSION = 1
CROP_RULE = "resize shorter side to S (bilinear, antialiased), then center-crop S×S"
SYNTHETIC = "synthetic"


# ----------------------------------------------------------------------------- sources


def _is_hidden(name: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in Path(name).parts)


def list_source(source: str) -> tuple[str, list[str], list[dict[str, str]]]:
    """(kind, candidate image names in sorted order, skipped non-image files) for a folder or zip."""
    path = Path(source)
    if not path.exists():
        raise FaceganError(
            f"data path {source!r} does not exist; pass an image folder, a .zip, a prepared dataset "
            f"folder or 'synthetic'"
        )
    if path.is_dir():
        kind = "folder"
        try:
            names = sorted(
                str(p.relative_to(path)) for p in path.rglob("*") if p.is_file() or p.is_symlink()
            )
        except PermissionError as err:
            raise FaceganError(f"cannot read {source!r}: {err.strerror}; check its permissions") from None
    elif zipfile.is_zipfile(path):
        kind = "zip"
        with zipfile.ZipFile(path) as zf:
            names = sorted(i.filename for i in zf.infolist() if not i.is_dir())
    else:
        try:
            path.open("rb").close()
        except OSError as err:
            raise FaceganError(f"cannot read {source!r}: {err.strerror}; check its permissions") from None
        raise FaceganError(f"{source!r} is neither a folder nor a zip archive of images")
    names = [n for n in names if not _is_hidden(n)]
    images = [n for n in names if n.lower().endswith(IMAGE_EXTS)]
    others = [{"file": n, "reason": "not an image file (extension)"} for n in names
              if not n.lower().endswith(IMAGE_EXTS)]
    return kind, images, others


class _Decoder:
    """Picklable worker callable: reads one member of the source and returns its packed pixels.

    The zip handle is opened lazily inside each worker process (a ZipFile cannot cross processes).
    """

    def __init__(self, source: str, kind: str, size: int, min_side: int, seed: int) -> None:
        self.source, self.kind, self.size, self.min_side, self.seed = source, kind, size, min_side, seed
        self._zip: zipfile.ZipFile | None = None
        self._tf = transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size)])

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_zip": None}

    def _open(self, name: str) -> Any:
        if self.kind == "zip":
            if self._zip is None:
                self._zip = zipfile.ZipFile(self.source)
            return self._zip.open(name)
        return open(Path(self.source) / name, "rb")

    def __call__(self, name: str) -> tuple[str, np.ndarray | None, str]:
        if self.kind == SYNTHETIC:
            from facegan.synthetic import synthetic_face

            pixels = synthetic_face(int(name.rsplit("/", 1)[1]), self.size, self.seed)
            return name, np.ascontiguousarray(pixels.transpose(2, 0, 1)), ""
        try:
            with self._open(name) as fh, Image.open(fh) as img:
                img.load()  # decode fully now so truncated files fail here, not later
                if min(img.size) < self.min_side:
                    w, h = img.size
                    return name, None, f"too small ({w}x{h}; shorter side < {self.min_side})"
                rgb = img.convert("RGB")
        except (UnidentifiedImageError, Image.DecompressionBombError) as err:
            return name, None, f"not a readable image ({type(err).__name__})"
        except (OSError, SyntaxError, ValueError, zipfile.BadZipFile, EOFError) as err:
            return name, None, f"corrupt or truncated ({err})"
        out = np.asarray(self._tf(rgb), dtype=np.uint8)  # (S, S, 3)
        return name, np.ascontiguousarray(out.transpose(2, 0, 1)), ""  # (3, S, S)


# ----------------------------------------------------------------------------- prepare


@dataclass(frozen=True)
class PrepareResult:
    out: Path
    count: int
    skipped: list[dict[str, str]]


def prepare(
    source: str,
    out: str | Path,
    size: int = 64,
    *,
    min_side: int | None = None,
    synthetic_count: int = 8192,
    seed: int = 0,
    workers: int | None = None,
    force: bool = False,
    quiet: bool = False,
) -> PrepareResult:
    """Pack `source` (folder, zip or "synthetic") into `out` as images.u8 + manifest.json."""
    check_size(size)
    min_side = size // 2 if min_side is None else min_side
    out = Path(out)
    _check_out_dir(out, force)

    if source == SYNTHETIC:
        kind, names = SYNTHETIC, [f"synthetic/{i:07d}" for i in range(synthetic_count)]
        skipped: list[dict[str, str]] = []
    else:
        kind, names, skipped = list_source(source)
        if not names:
            raise FaceganError(
                f"no image files found in {source!r} (looked recursively for {', '.join(IMAGE_EXTS)})"
            )

    decoder = _Decoder(str(source), kind, size, min_side, seed)
    out.mkdir(parents=True, exist_ok=True)
    tmp_images = out / (IMAGES + ".partial")
    digest = hashlib.sha256()
    kept: list[str] = []
    try:
        with open(tmp_images, "wb") as fh, _imap(decoder, names, workers) as results:
            bar = tqdm(results, total=len(names), unit="file", desc=f"prepare {kind}",
                       disable=quiet, file=sys.stderr, dynamic_ncols=True)
            for name, pixels, reason in bar:
                if pixels is None:
                    skipped.append({"file": name, "reason": reason})
                    continue
                buf = pixels.tobytes()
                fh.write(buf)
                digest.update(buf)
                kept.append(name)
    except OSError as err:
        tmp_images.unlink(missing_ok=True)
        raise FaceganError(f"could not write {tmp_images}: {err.strerror}") from None
    except BaseException:
        tmp_images.unlink(missing_ok=True)
        raise

    if not kept:
        tmp_images.unlink(missing_ok=True)
        _rmdir_if_empty(out)
        first = "; ".join(f"{s['file']}: {s['reason']}" for s in skipped[:3])
        raise FaceganError(f"no usable images in {source!r}: all {len(skipped)} files skipped ({first})")

    manifest = {
        "format": "facegan-dataset",
        "version": FORMAT_VERSION,
        "source": SYNTHETIC if kind == SYNTHETIC else str(Path(source).resolve()),
        "source_kind": kind,
        "count": len(kept),
        "size": size,
        "shape": [len(kept), 3, size, size],
        "dtype": "uint8",
        "layout": "NCHW",
        "crop": CROP_RULE,
        "min_side": min_side,
        "synthetic_seed": seed if kind == SYNTHETIC else None,
        "content_hash": "sha256:" + digest.hexdigest(),
        "skipped_count": len(skipped),
        "skipped": skipped,
        "files": kept,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    os.replace(tmp_images, out / IMAGES)
    _write_json_atomic(out / MANIFEST, manifest)
    return PrepareResult(out=out, count=len(kept), skipped=skipped)


class _imap:
    """Ordered map over a process pool (or in-process for small jobs), usable as a context manager."""

    def __init__(self, fn: _Decoder, items: list[str], workers: int | None) -> None:
        workers = min(os.cpu_count() or 1, 8) if workers is None else workers
        self.pool = None
        if workers > 1 and len(items) >= 512:
            self.pool = multiprocessing.get_context().Pool(workers)
            self.it: Iterator[Any] = self.pool.imap(fn, items, chunksize=64)
        else:
            self.it = map(fn, items)

    def __enter__(self) -> Iterator[Any]:
        return self.it

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()


def _check_out_dir(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FaceganError(f"--out {str(out)!r} is a file; give a folder path")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MANIFEST).exists():
            raise FaceganError(f"--out {str(out)!r} is a non-empty folder; choose a new or empty one")
        if not force:
            raise FaceganError(f"{str(out)!r} already holds a prepared dataset; pass --force to replace it")


def _rmdir_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- loading


class PackedDataset:
    """A prepared dataset opened as a read-only memory map (no copy into RAM)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        try:
            self.manifest: dict[str, Any] = json.loads((self.root / MANIFEST).read_text())
            shape = tuple(self.manifest["shape"])
            self.images = np.memmap(self.root / IMAGES, dtype=np.uint8, mode="r", shape=shape)
        except (OSError, ValueError, KeyError) as err:
            raise FaceganError(
                f"{str(self.root)!r} is not a readable prepared dataset ({err}); "
                f"re-create it with `facegan prepare`"
            ) from None
        self.count, self.size = int(shape[0]), int(shape[2])

    @property
    def content_hash(self) -> str:
        return str(self.manifest["content_hash"])

    def __len__(self) -> int:
        return self.count


def is_prepared(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file() and (Path(path) / IMAGES).is_file()


def default_cache_dir() -> Path:
    base = os.environ.get("FACEGAN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "facegan"
    )
    return Path(base) / "datasets"


def resolve_dataset(
    data: str, size: int, *, synthetic_count: int = 8192, seed: int = 0,
    cache_dir: Path | None = None, quiet: bool = False,
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
    if data == SYNTHETIC:
        key = f"synthetic-n{synthetic_count}-s{seed}-{size}px"
    else:
        path = Path(data)
        if not path.exists():
            list_source(data)  # raises the standard "does not exist" error
        stat = path.stat()
        ident = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{size}"
        key = f"{path.name}-{size}px-{hashlib.sha1(ident.encode()).hexdigest()[:10]}"
    target = (cache_dir or default_cache_dir()) / key
    if not is_prepared(target):
        if target.exists():
            shutil.rmtree(target)  # a partial cache entry from an interrupted prepare
        prepare(data, target, size, synthetic_count=synthetic_count, seed=seed, quiet=quiet)
    return PackedDataset(target)


class BatchSource:
    """Maps a global step to its training batch: stateless, so resume at any step is exact.

    Epoch e visits the images in `permutation(seed, e)`; step s is batch s % steps_per_epoch of epoch
    s // steps_per_epoch (the last incomplete batch is dropped so BatchNorm never sees a tiny batch).

    With `resident`, the uint8 array is copied to the device once (CelebA at 64² is 2.5 GB) and each
    batch is a gather + normalise there: no per-step host work, no host→device copy. Otherwise each
    batch is one fancy-index gather out of the memory map (no full copy in host RAM).
    """

    def __init__(self, ds: PackedDataset, batch_size: int, seed: int, device: torch.device,
                 hflip: bool = False, resident: bool = False, channels_last: bool = False) -> None:
        if batch_size > len(ds):
            raise FaceganError(
                f"--batch-size {batch_size} is larger than the dataset ({len(ds)} images); "
                f"use --batch-size {_largest_pow2(len(ds))} or add more images"
            )
        self.ds, self.batch_size, self.seed, self.device, self.hflip = ds, batch_size, seed, device, hflip
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.steps_per_epoch = len(ds) // batch_size
        self._epoch = -1
        self._order = torch.empty(0, dtype=torch.long)
        self._flip = torch.empty(0, dtype=torch.bool)
        self.images: torch.Tensor | None = _to_device(ds.images, device) if resident else None

    def _load_epoch(self, epoch: int) -> None:
        rng = np.random.default_rng((self.seed, epoch))
        where = self.device if self.images is not None else torch.device("cpu")
        self._order = torch.from_numpy(rng.permutation(len(self.ds))).to(where)
        self._flip = torch.from_numpy(rng.random(len(self.ds)) < 0.5).to(self.device)
        self._epoch = epoch

    def batch(self, step: int) -> torch.Tensor:
        """Normalised float batch (B, 3, S, S) in [-1, 1] on the device, for global `step`."""
        epoch, pos = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self._load_epoch(epoch)
        sl = slice(pos * self.batch_size, (pos + 1) * self.batch_size)
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
        part = torch.from_numpy(np.array(images[start:start + chunk]))  # one bounded chunk in RAM
        out[start:start + chunk].copy_(part)
    return out


def _largest_pow2(n: int) -> int:
    return 1 << (max(n, 1).bit_length() - 1)


def real_sample(ds: PackedDataset, n: int, seed: int = 0) -> torch.Tensor:
    """`n` real images in [-1, 1] (CPU), picked reproducibly, for figures."""
    idx = np.sort(np.random.default_rng(seed).choice(len(ds), size=min(n, len(ds)), replace=False))
    return torch.from_numpy(ds.images[idx]).float().div_(127.5).sub_(1.0)
