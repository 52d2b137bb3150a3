"""Shared fixtures: small real-looking image files made on the fly (tests never need downloads)."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Tests run on 2 cores; keep torch from oversubscribing them when pytest runs things in parallel.
os.environ.setdefault("OMP_NUM_THREADS", "2")


def jpeg_bytes(seed: int, w: int = 45, h: int = 55) -> bytes:
    """A small, smooth colour image (varied per seed) encoded as JPEG."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = rng.integers(0, 256, 3)
    img = (base + 60 * np.sin(xx[..., None] / (3 + seed % 5)) + 40 * np.cos(yy[..., None] / 4)) % 256
    buf = io.BytesIO()
    Image.fromarray(img.astype(np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def make_image_folder(root: Path, n: int, nested: bool = True) -> Path:
    """`n` JPEGs spread over nested sub-folders, like real dataset dumps."""
    for i in range(n):
        sub = root / f"part{i % 3}" / "deeper" if nested else root
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"{i:06d}.jpg").write_bytes(jpeg_bytes(i))
    return root


def make_zip(path: Path, n: int, prefix: str = "img_align_celeba/", extra: dict[str, bytes] | None = None
             ) -> Path:
    """A zip in the official CelebA layout (`img_align_celeba/000001.jpg`), plus any `extra` members."""
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(n):
            zf.writestr(f"{prefix}{i + 1:06d}.jpg", jpeg_bytes(i))
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return path


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "faces", 40)


@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    """A 64-image, 32px prepared dataset."""
    from facegan.data import prepare

    src = make_image_folder(tmp_path / "src", 64, nested=False)
    return prepare(str(src), tmp_path / "prepared", size=32, quiet=True).out
