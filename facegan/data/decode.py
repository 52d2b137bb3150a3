"""Decoding the images of a listed source (facegan.data.sources) into packed pixels: one file
(`Decoder`), or a whole listing in worker processes (`decoded`).

Formats: files are opened only as JPEG, PNG, BMP, WebP, GIF, TIFF or PPM (PIL's `formats=`),
whatever their name says, so no plugin that runs an external program (EPS runs Ghostscript) is ever
reached. An unexpected error from a codec skips that file; it never ends the prepare.

Work per image is bounded from the header, before any pixel is decoded: at most MAX_PIXELS (40 Mpx,
e.g. 6400×6400), no side over MAX_SIDE, and the longer side at most MAX_ASPECT times the shorter, so
the resize to S (shorter side → S) makes at most S × MAX_ASPECT·S pixels. Face datasets are far below
these (a 12 Mpx phone photo is the usual ceiling), while a decompression bomb — a 97 KB PNG that
claims 100 Mpx, or a 39 KB one of 1,250,000 × 32 that a resize to 256 would turn into gigabytes —
would cost that in every decoding worker. PIL's own guard only warns up to ~179 Mpx.

Transparency (alpha, a palette's transparent entries, a colour key) is composited over BACKGROUND
(white), so a colour hidden under transparent pixels is never packed as if it were visible.

A source that changes while it is read: a file that is no longer a regular file when read (e.g. now a
FIFO) is opened without blocking and skipped; one whose size or time differs from the listing, or a
zip that was replaced, ends the prepare with one line (SourceChanged) and nothing is written.

16- and 32-bit images (PIL modes I;16*, I, F) are scaled to 8 bit by their bit depth or value range,
not clipped.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import stat
import warnings
import zipfile
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from itertools import islice
from typing import IO, Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from torchvision import transforms

from facegan.data.sources import OUTSIDE, SYNTHETIC, ZIP_STAMP, SourceChanged, file_type, inside, printable
from facegan.errors import FaceganError

# PIL format ids tried when opening a file, whatever its name (PIL's JPEG opener also gives MPO images).
FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "GIF", "TIFF", "PPM")
MAX_PIXELS = 40_000_000
MAX_SIDE = 16_384
MAX_ASPECT = 8
BACKGROUND = (255, 255, 255)
POOL_MIN_FILES = 512  # below this, starting worker processes costs more than it saves
CHUNK = 64  # files per task sent to a worker
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


class _Unreadable(Exception):
    """A file that cannot be opened for a reason worth reporting as it is."""


def to_rgb(img: Image.Image) -> Image.Image:
    """An 8-bit RGB copy of a loaded image; 16/32-bit and float grey are scaled, not clipped, and
    transparent pixels are composited over BACKGROUND."""
    mode = img.mode
    if not (mode.startswith("I;16") or mode in ("I", "F")):
        if not img.has_transparency_data:
            return img.convert("RGB")
        flat = Image.new("RGBA", img.size, (*BACKGROUND, 255))
        flat.alpha_composite(img.convert("RGBA"))  # RGBA, LA, PA, a palette's or a colour key's alpha
        return flat.convert("RGB")
    a = np.nan_to_num(np.asarray(img, dtype=np.float64))
    key = img.info.get("transparency")  # a 16-bit grey PNG's colour key (tRNS): that value is transparent
    hidden = a == key if isinstance(key, int) else None
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if mode == "F" and lo >= 0 and hi <= 1:
        a = a * 255.0  # float images conventionally hold 0..1
    elif mode in ("I;16", "I;16L", "I;16B", "I;16N") or (mode == "I" and lo >= 0 and 255 < hi <= 65535):
        a = a / 257.0  # 16-bit depth (mode "I" is how older Pillows load 16-bit PNGs)
    elif lo < 0 or hi > 255:
        a = (a - lo) * (255.0 / max(hi - lo, 1e-12))  # no known depth: stretch the real range
    grey = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8)).convert("RGB")
    if hidden is not None and hidden.any():
        rgb = np.array(grey)
        rgb[hidden] = BACKGROUND
        return Image.fromarray(rgb)
    return grey


def _refusal(w: int, h: int, size: int) -> str | None:
    """Why an image of w×h (from its header) is not decoded, or None: bounds the work per image."""
    if w * h > MAX_PIXELS:
        return _too_large(f"{w}x{h}")
    if max(w, h) > MAX_SIDE:
        return f"too large ({w}x{h}; a side over {MAX_SIDE} px, not decoded)"
    short, long = max(min(w, h), 1), max(w, h)
    if long > MAX_ASPECT * short:
        return (
            f"too elongated ({w}x{h}; the longer side is over {MAX_ASPECT} times the shorter, so "
            f"resizing to {size} px would make a {size}x{size * long // short} image; not decoded)"
        )
    return None


class Decoder:
    """Picklable worker callable: reads one member of the source and returns its packed pixels.

    The zip handle is opened lazily inside each worker process (a ZipFile cannot cross processes).
    `stamps` (SourceListing.stamps) lets it notice a file or zip that changed since the listing.
    """

    def __init__(
        self,
        source: str,
        kind: str,
        size: int,
        min_side: int,
        seed: int,
        stamps: dict[str, tuple[int, int]] | None = None,
    ) -> None:
        self.source, self.kind, self.size, self.min_side, self.seed = source, kind, size, min_side, seed
        self.stamps = stamps or {}
        self._root = os.path.realpath(source) if kind == "folder" else ""
        self._zip: zipfile.ZipFile | None = None
        self._tf = transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size)])

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_zip": None}

    def _changed(self, what: str) -> SourceChanged:
        return SourceChanged(
            f"{printable(what)} changed while it was being prepared (its size or modification time is not "
            f"what the listing found); nothing was written — run prepare again once "
            f"{printable(self.source)} is no longer being changed"
        )

    def _open_file(self, name: str) -> IO[bytes]:
        # Resolve links now, not at listing time: a link may have been pointed elsewhere since.
        real = os.path.realpath(os.path.join(self.source, name))
        if not inside(real, self._root):
            raise _Unreadable(OUTSIDE)
        try:
            # Non-blocking: opening a FIFO to read would otherwise wait for a writer forever.
            fd = os.open(real, _OPEN_FLAGS)
        except FileNotFoundError:
            raise _Unreadable("no longer there (removed after the listing)") from None
        except OSError as err:
            raise _Unreadable(f"unreadable ({err.strerror})") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            kind = "folder" if stat.S_ISDIR(st.st_mode) else file_type(st.st_mode)
            raise _Unreadable(f"not a regular file ({kind}) when read; it was replaced after the listing")
        if name in self.stamps and (st.st_size, st.st_mtime_ns) != self.stamps[name]:
            os.close(fd)
            raise self._changed(name)
        return os.fdopen(fd, "rb")

    def _open(self, name: str) -> IO[bytes]:
        if self.kind != "zip":
            return self._open_file(name)
        if self._zip is None:
            fh = open(self.source, "rb")  # noqa: SIM115 - kept open by the ZipFile for this process's life
            st = os.fstat(fh.fileno())
            if ZIP_STAMP in self.stamps and (st.st_size, st.st_mtime_ns) != self.stamps[ZIP_STAMP]:
                fh.close()
                raise self._changed(self.source)
            self._zip = zipfile.ZipFile(fh)
        try:
            info = self._zip.getinfo(name)
        except KeyError:
            raise _Unreadable("no longer in the zip") from None
        if info.flag_bits & 0x1:
            raise _Unreadable("encrypted zip member (password-protected)")
        try:
            return self._zip.open(info)
        except (NotImplementedError, RuntimeError) as err:  # e.g. compression method 99 (AES), 12 w/o bz2
            raise _Unreadable(f"unsupported zip compression (method {info.compress_type}: {err})") from None

    def __call__(self, name: str) -> tuple[str, np.ndarray | None, str]:
        if self.kind == SYNTHETIC:
            from facegan.data.synthetic import synthetic_face

            pixels = synthetic_face(int(name.rsplit("/", 1)[1]), self.size, self.seed)
            return name, np.ascontiguousarray(pixels.transpose(2, 0, 1)), ""
        try:
            with self._open(name) as fh, warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, quietly
                with Image.open(fh, formats=FORMATS) as img:
                    w, h = img.size  # from the header: nothing is decoded yet
                    refused = _refusal(w, h, self.size)
                    if refused:
                        return name, None, refused
                    img.load()  # decode fully now so truncated files fail here, not later
                    if min(img.size) < self.min_side:
                        return name, None, f"too small ({w}x{h}; shorter side < {self.min_side})"
                    out = np.asarray(self._tf(to_rgb(img)), dtype=np.uint8)  # (S, S, 3)
        except SourceChanged:
            raise  # the whole prepare stops: see the module docstring
        except _Unreadable as err:
            return name, None, str(err)
        except Image.DecompressionBombError:
            return name, None, _too_large("over 179 Mpx")
        except UnidentifiedImageError as err:
            return name, None, f"not a readable image ({type(err).__name__}; accepted formats: {ACCEPTED})"
        except (OSError, SyntaxError, ValueError, zipfile.BadZipFile, EOFError) as err:
            return name, None, f"corrupt or truncated ({err})"
        except Exception as err:  # a codec's own bug must cost one file, not a 200,000-image prepare
            return name, None, f"could not decode ({type(err).__name__}: {err})"
        return name, np.ascontiguousarray(out.transpose(2, 0, 1)), ""  # (3, S, S)


ACCEPTED = ", ".join(FORMATS)


def _too_large(dims: str) -> str:
    return f"too large ({dims}; over the {MAX_PIXELS // 1_000_000} Mpx limit, not decoded)"


# Worker-side state: the decoder arrives once per process (its zip handle then stays open across tasks).
_worker_decoder: Decoder | None = None


def _init_worker(decoder: Decoder) -> None:
    global _worker_decoder
    _worker_decoder = decoder


def _decode_chunk(names: list[str]) -> list[tuple[str, np.ndarray | None, str]]:
    assert _worker_decoder is not None
    return [_worker_decoder(name) for name in names]


@contextlib.contextmanager
def decoded(
    decoder: Decoder, names: list[str], workers: int | None
) -> Iterator[Iterator[tuple[str, np.ndarray | None, str]]]:
    """`decoder(name)` for each name, in order: in worker processes, or in-process for small jobs."""
    workers = min(os.cpu_count() or 1, 8) if workers is None else workers
    if workers <= 1 or len(names) < POOL_MIN_FILES:
        yield map(decoder, names)
        return
    # A ProcessPoolExecutor notices a worker that died (OOM killer, segfault in a codec) and fails every
    # pending task with BrokenProcessPool; multiprocessing.Pool would wait for its result forever.
    pool = ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context(), initializer=_init_worker, initargs=(decoder,)
    )
    try:
        yield _ordered(pool, names, workers)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _ordered(
    pool: ProcessPoolExecutor, names: list[str], workers: int
) -> Iterator[tuple[str, np.ndarray | None, str]]:
    """Results of CHUNK-sized tasks in order, with a bounded number in flight (bounded memory)."""
    chunks = (names[i : i + CHUNK] for i in range(0, len(names), CHUNK))
    pending: deque[Future[list[tuple[str, np.ndarray | None, str]]]] = deque(
        pool.submit(_decode_chunk, chunk) for chunk in islice(chunks, 4 * workers)
    )
    while pending:
        try:
            done = pending.popleft().result()
        except BrokenProcessPool:
            raise FaceganError(
                "a decoding worker process died (killed by the system, most likely out of memory); nothing "
                "was written — free some memory or use fewer workers (facegan prepare --workers 1) and retry"
            ) from None
        pending.extend(pool.submit(_decode_chunk, chunk) for chunk in islice(chunks, 1))
        yield from done
