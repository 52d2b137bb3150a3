"""Shared fixtures: small real-looking image files made on the fly (tests never need downloads)."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Tests run on 2 cores; keep torch from oversubscribing them when pytest runs things in parallel.
os.environ.setdefault("OMP_NUM_THREADS", "2")
# PRDC's face embedding trains once per dataset (300 steps, minutes on a CPU core); the tiny test
# datasets only need a few steps for the code paths, here and in the subprocesses tests start.
os.environ.setdefault("FACEGAN_EMBEDDING_STEPS", "5")


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


def make_zip(
    path: Path, n: int, prefix: str = "img_align_celeba/", extra: dict[str, bytes] | None = None
) -> Path:
    """A zip in the official CelebA layout (`img_align_celeba/000001.jpg`), plus any `extra` members."""
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(n):
            zf.writestr(f"{prefix}{i + 1:06d}.jpg", jpeg_bytes(i))
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return path


def constant_png(w: int, h: int) -> bytes:
    """A valid w×h black greyscale PNG, streamed (never held decoded): 10000×10000 is a 97 KB file."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    comp = zlib.compressobj(9)
    row = b"\0" * (w + 1)  # filter byte + pixels
    idat = b"".join(comp.compress(row) for _ in range(h)) + comp.flush()
    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def patch_zip_member(path: Path, name: str, *, flag_bits: int = 0, compress_type: int | None = None) -> None:
    """Set header fields of one zip member in place (zipfile cannot write encrypted or AES members)."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        offsets = [zf.getinfo(name).header_offset]  # the local header: flags at +6, method at +8
        pos = zf.start_dir
    while data[pos : pos + 4] == b"PK\x01\x02":  # central directory: flags at +8, method at +10
        n, m, k = struct.unpack_from("<HHH", data, pos + 28)
        if data[pos + 46 : pos + 46 + n] == name.encode():
            offsets.append(pos + 2)  # shifted so that both headers patch at +6 / +8
        pos += 46 + n + m + k
    for off in offsets:
        struct.pack_into("<H", data, off + 6, struct.unpack_from("<H", data, off + 6)[0] | flag_bits)
        if compress_type is not None:
            struct.pack_into("<H", data, off + 8, compress_type)
    path.write_bytes(bytes(data))


class DeadlineExceeded(Exception):
    """Raised by `deadline`; deliberately not TimeoutError, which is an OSError that code may catch."""


@contextlib.contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail with DeadlineExceeded instead of hanging the suite (SIGALRM: main thread, POSIX only)."""

    def expire(signum: int, frame: object) -> None:
        raise DeadlineExceeded(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "faces", 40)


@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    """A 64-image, 32px prepared dataset."""
    from facegan.data.prepare import prepare

    src = make_image_folder(tmp_path / "src", 64, nested=False)
    return prepare(str(src), tmp_path / "prepared", size=32, quiet=True).out
