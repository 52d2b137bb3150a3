"""What generated faces are compared with: the real split, a folder of fakes, the face embedding.

Real split. `facegan prepare` holds out a seeded tenth of the images (facegan.data.prepare.heldout_split)
that training leaves out; every metric compares with it by default ("auto" → "heldout"). A dataset
prepared before splits existed has none: "auto" then measures against all of its images, which the
generator trained on, and says so ("all"). Published FIDs are usually computed against the training
set; `--real-split all` reproduces that protocol.

Fakes. `facegan evaluate --fakes DIR|ZIP` measures a folder or zip of images instead of a generator
(torch-fidelity's two-input mode), decoded and cropped exactly as `facegan prepare` does.

Embedding. PRDC and the nearest-neighbour check use a FaceEmbedding (facegan.metrics.embedding)
trained on the dataset's training rows: a shipped one when it was made for exactly this data and split,
else one from the cache, else one trained now (then cached).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facegan.data.dataset import PackedDataset
from facegan.errors import FaceganError
from facegan.metrics.embedding import RECIPE, FaceEmbedding, load_embedding, save_embedding, train_embedding
from facegan.storage.files import cache_root

SPLITS = ("auto", "heldout", "train", "all")
SHIPPED_EMBEDDINGS = Path(__file__).parent / "face_embeddings"
EMBEDDING_STEPS = 300  # measured: 300 steps at batch 128 already ranks 2×-blurred CelebA below the reals


@dataclass(frozen=True)
class Reference:
    """The real rows metrics compare with, and the name of that split ("heldout", "train", "all")."""

    split: str
    rows: np.ndarray

    @property
    def note(self) -> str:
        """One line for the report."""
        what = {
            "heldout": "held-out images (the split training leaves out unless --train-on-heldout)",
            "train": "training images",
            "all": "all images, the training ones included",
        }[self.split]
        return f"{len(self.rows)} {what}"


def reference(ds: PackedDataset, split: str = "auto") -> Reference:
    """The rows of `ds` that split `split` names; FaceganError for an unknown split or one the data lacks."""
    if split not in SPLITS:
        raise FaceganError(f"--real-split must be one of {', '.join(SPLITS)}, got {split!r}")
    if split == "heldout" and not ds.has_split:
        raise FaceganError(
            f"{str(ds.root)!r} has no held-out split (prepared before splits existed, or "
            f"under 100 images); re-create it with `facegan prepare --force`, or pass "
            f"--real-split all"
        )
    if split == "auto":
        split = "heldout" if ds.has_split else "all"
    rows = {"heldout": ds.heldout_rows, "train": ds.train_rows, "all": np.arange(len(ds))}[split]
    return Reference(split, rows)


def rows_digest(rows: np.ndarray) -> str:
    """Short digest of a row selection (cache keys, the embedding's provenance)."""
    return hashlib.sha256(np.asarray(rows, dtype=np.int64).tobytes()).hexdigest()[:16]


def load_fakes(source: str, size: int, limit: int | None = None) -> np.ndarray:
    """uint8 (N, 3, size, size) images of a folder or zip, cropped as `facegan prepare` crops; one
    FaceganError line when it holds none. Unreadable files are skipped (as prepare skips them)."""
    from facegan.data.decode import Decoder
    from facegan.data.prepare import source_listing
    from facegan.data.sources import SYNTHETIC

    if source == SYNTHETIC or not Path(source).exists():
        raise FaceganError(f"--fakes {source!r} is not a folder or .zip of images")
    listing = source_listing(source)
    decode = Decoder(source, listing.kind, size, 1, 0)
    names = listing.images[:limit] if limit else listing.images
    kept = [pixels for _, pixels, _ in map(decode, names) if pixels is not None]
    if len(kept) < 2:
        raise FaceganError(f"--fakes {source!r} holds {len(kept)} readable image(s); metrics need at least 2")
    return np.stack(kept)


def embedding_for(
    ds: PackedDataset,
    path: str | Path | None = None,
    *,
    steps: int | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> FaceEmbedding:
    """The face embedding for `ds`: `path` if given; else a shipped or cached one trained on exactly
    `ds`'s training rows; else one trained now on them (minutes on a CPU core) and cached."""
    if path is not None:
        model = load_embedding(path)
        if model.size != ds.size:
            raise FaceganError(
                f"the embedding {str(path)!r} is for {model.size}px faces, the data is {ds.size}px"
            )
        return model
    if steps is None:  # read at call time: tests shorten it (FACEGAN_EMBEDDING_STEPS reaches subprocesses)
        steps = int(os.environ.get("FACEGAN_EMBEDDING_STEPS", EMBEDDING_STEPS))
    train_rows = ds.train_rows
    ident = {
        "recipe": RECIPE,
        "content_hash": ds.content_hash,
        "train_rows": rows_digest(train_rows),
        "steps": steps,
    }
    name = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20] + ".safetensors"
    folder = Path(cache_dir) if cache_dir is not None else cache_root() / "metrics"
    for candidate in (SHIPPED_EMBEDDINGS / name, folder / f"embedding-{name}"):
        if candidate.is_file():
            return load_embedding(candidate)
    if progress:
        print(
            f"training a face embedding on the {len(train_rows)} training images ({steps} steps; once, "
            f"then cached)",
            file=sys.stderr,
        )
    model = train_embedding(np.asarray(ds.images[train_rows]), steps=steps)
    try:
        save_embedding(model, folder / f"embedding-{name}", ident)
    except OSError as err:  # a read-only cache costs a retrain next time, not this evaluation
        print(f"face embedding not cached: {err}", file=sys.stderr)
    return model
