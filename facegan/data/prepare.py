"""`facegan prepare`: pack images into a dataset folder once, so training never decodes an image.

A prepared dataset is a folder holding
  images.u8      raw uint8 array, shape (N, 3, S, S), C order — np.memmap-able, no decoding at train time
  manifest.json  source, count, size, crop rule, content hash, ordered file list, every skipped file
  attributes.i8  only with an attribute file: int8 labels, shape (N, A), row i for image i
                 (facegan.data.attributes: `--attributes`, or a list_attr_celeba.txt in or beside the source)
(facegan.data.dataset opens it for training.)

Sources: an image folder (searched recursively), a zip archive read in place, or "synthetic"
(listed by facegan.data.sources and decoded by facegan.data.decode, which between them document the
40 Mpx per-image pixel limit and every reason a file is skipped). A folder or zip given to `facegan
train` is prepared once into the cache (`prepare_cached`, under facegan.storage.files.cache_root()),
keyed by its files' names, sizes and mtimes, so a changed source is prepared again.

Preparing is safe to interrupt and to run twice at once (facegan.data.workspace): the dataset is built
in a uniquely named hidden folder beside the output (`.NAME.tmp-HOST-PID-RANDOM`), synced to disk and
published by rename while holding an flock on `.NAME.lock` beside the output, so a reader sees a
complete dataset or none, a killed prepare never leaves a half-written output, and a second preparer
of the same cache entry waits and reuses the first one's result. Decoding workers that die (e.g.
OOM-killed) end the run with one error.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
from tqdm import tqdm

from facegan.config.schema import check_size
from facegan.data.attributes import (
    ATTRIBUTES,
    AttributeTable,
    align,
    find_attributes,
    read_attributes,
    unrelated,
)
from facegan.data.decode import BACKGROUND, FORMATS, MAX_ASPECT, MAX_PIXELS, MAX_SIDE, Decoder, decoded
from facegan.data.sources import IMAGE_EXTS, SYNTHETIC, SourceListing, printable, scan_source, skip
from facegan.data.workspace import new_work_dir, output_lock
from facegan.errors import FaceganError
from facegan.storage.files import cache_root, fsync_dir, fsync_file

MANIFEST = "manifest.json"
IMAGES = "images.u8"
FORMAT_VERSION = 1
# Part of the cache key: bump when decoding changes what a source packs to (2: 16-bit scaling, pixel limit;
# 3: transparency composited over white, side and aspect limits, links out of the source not followed).
DECODE_VERSION = 3
CROP_RULE = "resize shorter side to S (bilinear, antialiased), then center-crop S×S"
# The held-out real split that metrics compare against (facegan.data.dataset.PackedDataset.heldout_rows): this
# fraction of the images, at most HOLDOUT_MAX, drawn with the split seed; none below HOLDOUT_MIN_COUNT
# images, where it would leave too few to train on (evaluate then says it measured against training images).
HOLDOUT_FRACTION = 0.1
HOLDOUT_MAX = 10_000
HOLDOUT_MIN_COUNT = 100
# What an interrupted prepare of an older facegan could leave in --out (--force may replace them).
_LEFTOVERS = frozenset({IMAGES, IMAGES + ".partial", MANIFEST + ".partial", ATTRIBUTES})


# ----------------------------------------------------------------------------- prepare


@dataclass(frozen=True)
class PrepareResult:
    out: Path
    count: int
    skipped: list[dict[str, str]]
    notes: tuple[str, ...] = ()  # one-line reports to print (the attribute file's, so far)
    heldout_count: int = 0


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
    attributes: str | Path | None = None,
    find_attrs: bool = True,
    holdout: float = HOLDOUT_FRACTION,
    split_seed: int = 0,
) -> PrepareResult:
    """Pack `source` (folder, zip or "synthetic") into `out` as images.u8 + manifest.json.

    The manifest records a held-out split (`holdout` of the images, drawn with `split_seed`) that
    training leaves out and metrics measure against. With `force`, a dataset already in `out` (or the
    leftovers of an interrupted prepare) is replaced; any other files in `out` are never touched.
    Labels come from the attribute file `attributes`, else (with `find_attrs`) from a
    list_attr_celeba.txt in or beside `source` (facegan.data.attributes).
    """
    check_size(size)
    heldout_split(HOLDOUT_MIN_COUNT, holdout, split_seed)  # a bad --holdout fails before any decoding
    out = Path(out)
    _check_out_dir(out, force)  # fail before reading the source or waiting for the lock
    listing = source_listing(source, synthetic_count)
    attr_path = find_attributes(source, attributes, find_attrs)
    table = read_attributes(attr_path) if attr_path else None  # a bad header: refused before decoding
    not_used = unrelated(table, listing.images, attributes is not None) if table else None
    if not_used:
        table = None
    with output_lock(out, quiet) as waited:
        _check_out_dir(out, force)  # another process may have published there while we waited
        if waited:  # the source may have changed (a zip replaced) while we waited: read it again
            listing = source_listing(source, synthetic_count)
        result = _build(
            source,
            listing,
            out,
            size,
            min_side=min_side,
            seed=seed,
            workers=workers,
            quiet=quiet,
            table=table,
            holdout=holdout,
            split_seed=split_seed,
        )
    return replace(result, notes=(not_used, *result.notes)) if not_used else result


def source_listing(source: str, synthetic_count: int = 8192) -> SourceListing:
    """What `source` holds; a FaceganError when it holds no image file at all."""
    if source == SYNTHETIC:
        names = [f"synthetic/{i:07d}" for i in range(synthetic_count)]
        return SourceListing(SYNTHETIC, names, [], f"synthetic-{synthetic_count}")
    listing = scan_source(source)
    if not listing.images:
        raise FaceganError(
            f"no image files found in {source!r} (looked recursively for {', '.join(IMAGE_EXTS)})"
        )
    return listing


def _build(
    source: str,
    listing: SourceListing,
    out: Path,
    size: int,
    *,
    min_side: int | None,
    seed: int,
    workers: int | None,
    quiet: bool,
    table: AttributeTable | None = None,
    holdout: float = HOLDOUT_FRACTION,
    split_seed: int = 0,
) -> PrepareResult:
    """Decode `listing` into a private folder beside `out`, then publish it there (caller holds the lock)."""
    min_side = size // 2 if min_side is None else min_side
    kind, skipped = listing.kind, list(listing.skipped)
    decoder = Decoder(str(source), kind, size, min_side, seed, stamps=listing.stamps)
    notes: list[str] = []
    work = new_work_dir(out)
    digest = hashlib.sha256()
    kept: list[str] = []
    try:
        with open(work / IMAGES, "wb") as fh, decoded(decoder, listing.images, workers) as results:
            bar = tqdm(
                results,
                total=len(listing.images),
                unit="file",
                desc=f"prepare {kind}",
                disable=quiet,
                file=sys.stderr,
                dynamic_ncols=True,
            )
            for name, pixels, reason in bar:
                if pixels is None:
                    skipped.append(skip(name, reason))
                    continue
                buf = pixels.tobytes()
                fh.write(buf)
                digest.update(buf)
                kept.append(name)
        if not kept:
            first = "; ".join(f"{s['file']}: {s['reason']}" for s in skipped[:3])
            raise FaceganError(f"no usable images in {source!r}: all {len(skipped)} files skipped ({first})")
        attrs: dict[str, Any] | None = None
        if table is not None:  # rows follow the images actually kept, in their order
            labels, attrs, notes = align(table, kept, listing.images)
            (work / ATTRIBUTES).write_bytes(labels.tobytes())
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
            "max_pixels": MAX_PIXELS,
            "max_side": MAX_SIDE,
            "max_aspect": MAX_ASPECT,
            "formats": list(FORMATS),
            "transparency": f"composited over white {BACKGROUND}",
            "links": "followed only to files inside the source; others are in skipped, never read",
            "synthetic_seed": seed if kind == SYNTHETIC else None,
            "content_hash": "sha256:" + digest.hexdigest(),
            "skipped_count": len(skipped),
            "skipped": skipped,
            "split": (split := heldout_split(len(kept), holdout, split_seed)),
            "files": [printable(name) for name in kept],
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        if attrs is not None:
            manifest["attributes"] = attrs
        (work / MANIFEST).write_text(json.dumps(manifest, indent=1))  # private until published
        for name in (IMAGES, MANIFEST, *([ATTRIBUTES] if attrs else [])):  # synced before published
            fsync_file(work / name)
        _publish(work, out)
        fsync_dir(out)
        fsync_dir(out.parent)
    except OSError as err:
        raise FaceganError(
            f"could not write {str(out)!r}: {err.strerror or err}; check its free space and "
            f"permissions, or pick another output folder"
        ) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)  # gone once published; otherwise a failed build's remains
    return PrepareResult(
        out=out,
        count=len(kept),
        skipped=skipped,
        notes=tuple(notes),
        heldout_count=split["heldout_count"],
    )


class HeldoutSplit(TypedDict):
    """The manifest's "split" (see `heldout_split`)."""

    seed: int
    fraction: float
    heldout_count: int
    heldout: list[int]
    rule: str


def heldout_split(count: int, fraction: float = HOLDOUT_FRACTION, seed: int = 0) -> HeldoutSplit:
    """The manifest's "split": sorted rows held out from training (a seeded random `fraction` of
    `count`, at most HOLDOUT_MAX; none below HOLDOUT_MIN_COUNT images), with the rule that drew them."""
    if not 0.0 <= fraction < 1.0:
        raise FaceganError(f"--holdout must be a fraction in [0, 1), got {fraction}")
    n = 0 if count < HOLDOUT_MIN_COUNT else min(HOLDOUT_MAX, round(count * fraction))
    rows = np.sort(np.random.default_rng(seed).permutation(count)[:n]) if n else np.zeros(0, np.int64)
    return {
        "seed": seed,
        "fraction": fraction,
        "heldout_count": int(n),
        "heldout": rows.tolist(),
        "rule": f"numpy default_rng(seed).permutation(count)[:n], n = round(count * fraction) capped at "
        f"{HOLDOUT_MAX}, 0 below {HOLDOUT_MIN_COUNT} images; sorted rows of images.u8",
    }


def _publish(work: Path, out: Path) -> None:
    """Move the finished build to `out`: one atomic rename when `out` is new (caller holds the lock)."""
    if not os.path.lexists(out):
        os.rename(work, out)
        return
    # `out` exists: an empty folder (perhaps a mount point) or a dataset replaced with --force. Swap our
    # files in and leave any others; the manifest goes first and comes back last, so a reader never
    # pairs an old manifest with new pixels.
    for name in (MANIFEST, IMAGES + ".partial", MANIFEST + ".partial", ATTRIBUTES):
        (out / name).unlink(missing_ok=True)
    shutil.move(work / IMAGES, out / IMAGES)
    if (work / ATTRIBUTES).exists():
        shutil.move(work / ATTRIBUTES, out / ATTRIBUTES)
    shutil.move(work / MANIFEST, out / MANIFEST)


def _check_out_dir(out: Path, force: bool) -> None:
    """Refuse an `out` that is a file or holds other data, or that holds a dataset unless `force`."""
    if out.exists() and not out.is_dir():
        raise FaceganError(f"--out {str(out)!r} is a file; give a folder path")
    try:
        names = {p.name for p in out.iterdir()} if out.is_dir() else set()
    except OSError as err:
        raise FaceganError(f"cannot read --out {str(out)!r}: {err.strerror}; check its permissions") from None
    if not names:
        return
    if MANIFEST in names:
        if not force:
            raise FaceganError(f"{str(out)!r} already holds a prepared dataset; pass --force to replace it")
    elif names <= _LEFTOVERS:
        if not force:
            raise FaceganError(
                f"{str(out)!r} holds a half-written dataset (an interrupted prepare); "
                f"pass --force to replace it"
            )
    else:
        raise FaceganError(f"--out {str(out)!r} is a non-empty folder; choose a new or empty one")


# ----------------------------------------------------------------------------- the dataset cache


def is_prepared(path: str | Path) -> bool:
    """Whether `path` is a prepared dataset folder (both of its files are there)."""
    return (Path(path) / MANIFEST).is_file() and (Path(path) / IMAGES).is_file()


def default_cache_dir() -> Path:
    """datasets/ under facegan's cache root ($FACEGAN_CACHE, else $XDG_CACHE_HOME/facegan)."""
    return cache_root() / "datasets"


def prepare_cached(
    data: str,
    size: int,
    *,
    synthetic_count: int = 8192,
    seed: int = 0,
    cache_dir: Path | None = None,
    quiet: bool = False,
) -> Path:
    """The cache folder holding `data` (a folder, zip or "synthetic") prepared at `size`, preparing it
    there first unless an earlier run (or a concurrent one, waited for) already did."""
    listing = source_listing(data, synthetic_count)  # the standard "does not exist" / "no images" errors
    if data == SYNTHETIC:
        key = f"synthetic-n{synthetic_count}-s{seed}-{size}px"
    else:
        # Every file's path, size and mtime (a zip's own): an image replaced in place changes the key.
        path = Path(data).resolve()
        ident = f"{path}|{listing.kind}|{listing.fingerprint}|{size}|decode-v{DECODE_VERSION}"
        digest = hashlib.sha1(ident.encode("utf-8", "surrogateescape"))  # a non-UTF-8 path is still a key
        key = f"{path.name}-{size}px-{digest.hexdigest()[:10]}"
    target = (cache_dir or default_cache_dir()) / key
    with output_lock(target, quiet):
        if not is_prepared(target):  # else another process prepared it while we waited: reuse it
            _check_out_dir(target, force=True)  # leftovers of an interrupted older facegan get replaced
            _build(data, listing, target, size, min_side=None, seed=seed, workers=None, quiet=quiet)
    return target
