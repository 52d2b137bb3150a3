"""Reading image sources for `facegan prepare`: list a folder or zip, fingerprint it, decode one image.

Nothing that is not packed vanishes silently: every such file is listed with a reason — not an image
(extension), hidden file or folder, FIFO/socket/device, broken symlink, symlink to a folder or to a
file outside the source, unreadable folder, zip member with an unsafe ("../" or absolute) name,
duplicate zip name, encrypted or unsupported-compression zip member, unreadable, not in an accepted
format, truncated, too small, too large or too elongated.

Links: a symlink is followed only to a file inside the source (checked when listing and again when
reading, on the resolved path), so a link cannot pack a file from elsewhere on the machine.

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
not clipped. Names in manifests and messages are printable UTF-8 (undecodable bytes as \\xNN, control
characters escaped), so a non-UTF-8 file name can never crash a summary line.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import warnings
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from torchvision import transforms

from facegan.errors import FaceganError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm")
# PIL format ids tried when opening a file, whatever its name (PIL's JPEG opener also gives MPO images).
FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "GIF", "TIFF", "PPM")
MAX_PIXELS = 40_000_000
MAX_SIDE = 16_384
MAX_ASPECT = 8
BACKGROUND = (255, 255, 255)
SYNTHETIC = "synthetic"
ZIP_STAMP = ""  # the stamps key of a zip's own (size, mtime): no member can have an empty name
OUTSIDE = "symlink to a file outside the source (not followed)"
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


def printable(text: str) -> str:
    """`text` as printable, valid UTF-8: undecodable bytes as \\xNN, control characters escaped."""
    try:
        raw = text.encode("utf-8", "surrogateescape")  # a non-UTF-8 file name from os.listdir
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "backslashreplace")
    decoded = raw.decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in decoded)


def skip(name: str, reason: str) -> dict[str, str]:
    """A skipped-list entry whose name and reason are safe to print and to write as JSON."""
    return {"file": printable(name), "reason": printable(reason)}


@dataclass(frozen=True)
class SourceListing:
    """What a folder or zip holds: the images to decode, everything else with a reason, a fingerprint."""

    kind: str  # "folder" or "zip"
    images: list[str]  # real names (as the file system or zip spells them), sorted
    skipped: list[dict[str, str]]
    fingerprint: str  # changes when any file is added, removed, resized or touched
    # (size, mtime_ns) of each image file as listed (a zip: of the zip, under ZIP_STAMP): a file that
    # differs when read changed during the prepare
    stamps: dict[str, tuple[int, int]] = field(default_factory=dict)


class SourceChanged(FaceganError):
    """A source file or zip changed between the listing and the reading: its pixels would not match
    the listing (nor the cache key made from it)."""


def scan_source(source: str) -> SourceListing:
    """List a folder (recursively) or a zip read in place; raise FaceganError if it is neither."""
    path = Path(source)
    if not path.exists():
        raise FaceganError(
            f"data path {source!r} does not exist; pass an image folder, a .zip, a prepared dataset "
            f"folder or 'synthetic'"
        )
    if path.is_dir():
        return _scan_folder(path, source)
    if zipfile.is_zipfile(path):
        return _scan_zip(path, source)
    try:
        path.open("rb").close()
    except OSError as err:
        raise FaceganError(f"cannot read {source!r}: {err.strerror}; check its permissions") from None
    raise FaceganError(f"{source!r} is neither a folder nor a zip archive of images")


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTS)


def _hidden_reason(part: str, is_dir: bool) -> str | None:
    if part == "__MACOSX":
        return "macOS metadata folder (not read)"
    if part.startswith("."):
        return "hidden folder (not read)" if is_dir else "hidden file (name starts with '.')"
    return None


def _file_type(mode: int) -> str:
    kinds = (
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    )
    return next((label for test, label in kinds if test(mode)), "special file")


def inside(path: str, root: str) -> bool:
    """Whether resolved `path` is `root` (resolved) or below it."""
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # another drive (Windows)
        return False


def _scan_folder(root: Path, source: str) -> SourceListing:
    files: list[tuple[str, int, int]] = []  # (name, size, mtime_ns) of every regular file
    real_root = os.path.realpath(root)
    skipped: list[dict[str, str]] = []
    pending = [""]  # relative folders still to read; a stack, not recursion, so depth is unbounded
    while pending:
        rel = pending.pop()
        try:
            with os.scandir(root / rel) as it:
                entries = list(it)
        except OSError as err:
            if not rel:
                raise FaceganError(f"cannot read {source!r}: {err.strerror}; check its permissions") from None
            skipped.append(skip(rel + "/", f"unreadable folder ({err.strerror})"))
            continue
        for entry in entries:
            name = f"{rel}/{entry.name}" if rel else entry.name
            is_dir = entry.is_dir(follow_symlinks=False)
            hidden = _hidden_reason(entry.name, is_dir)
            if hidden:
                skipped.append(skip(name + "/" if is_dir else name, hidden))
            elif is_dir:
                pending.append(name)
            else:
                try:
                    st = entry.stat()  # follows a symlink: what matters is the file that would be read
                except OSError as err:
                    broken = entry.is_symlink()
                    skipped.append(skip(name, "broken symlink" if broken else f"unreadable ({err.strerror})"))
                    continue
                if stat.S_ISDIR(st.st_mode):
                    skipped.append(skip(name, "symlink to a folder (not followed)"))
                elif entry.is_symlink() and not inside(os.path.realpath(entry.path), real_root):
                    skipped.append(skip(name, OUTSIDE))
                elif not stat.S_ISREG(st.st_mode):  # reading a FIFO would block forever
                    skipped.append(skip(name, f"not a regular file ({_file_type(st.st_mode)})"))
                else:
                    files.append((name, st.st_size, st.st_mtime_ns))
    files.sort()
    skipped.sort(key=lambda s: s["file"])
    digest = hashlib.sha256()
    for name, size, mtime_ns in files:
        digest.update(os.fsencode(name) + f"\0{size}\0{mtime_ns}\n".encode())
    for entry in skipped:  # a hidden file or FIFO appearing also changes the manifest
        digest.update(f"{entry['file']}\0{entry['reason']}\n".encode())
    images = [name for name, _, _ in files if _is_image(name)]
    others = [skip(name, "not an image file (extension)") for name, _, _ in files if not _is_image(name)]
    stamps = {name: (size, mtime_ns) for name, size, mtime_ns in files if _is_image(name)}
    return SourceListing("folder", images, others + skipped, digest.hexdigest(), stamps)


def _zip_skip_reason(name: str) -> tuple[str, str] | None:
    """(what to list, why) for a zip member not read because of its name alone; None: read it."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if name.startswith(("/", "\\")) or ".." in parts or re.match(r"[A-Za-z]:", name):
        return name, "unsafe path (absolute or '..'); not read"
    for i, part in enumerate(parts):
        is_dir = i < len(parts) - 1
        reason = _hidden_reason(part, is_dir)
        if reason:  # a hidden folder is listed once, as its own path
            return ("/".join(parts[: i + 1]) + "/" if is_dir else name), reason
    return None if _is_image(name) else (name, "not an image file (extension)")


def _scan_zip(path: Path, source: str) -> SourceListing:
    try:
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
    except (OSError, zipfile.BadZipFile) as err:
        raise FaceganError(f"cannot read the zip {source!r} ({err}); check that it is complete") from None
    used = {i.filename: i for i in infos}  # zipfile opens the last member of a duplicated name
    copies = Counter(i.filename for i in infos)
    images: list[str] = []
    skipped: list[dict[str, str]] = []
    hidden_dirs: Counter[tuple[str, str]] = Counter()  # one line per hidden folder, not per member
    for info in infos:
        name = info.filename
        found = _zip_skip_reason(name)
        if used[name] is not info:
            reason = f"duplicate name in the zip ({copies[name]} members; the last is used)"
            skipped.append(skip(name, reason))
        elif found is None:
            images.append(name)
        elif found[0] != name:
            hidden_dirs[found] += 1
        else:
            skipped.append(skip(*found))
    for (folder, reason), n in hidden_dirs.items():
        skipped.append(skip(folder, reason.replace("not read", f"{n} files not read")))
    st = path.stat()  # a zip is one file: its size and mtime cover every member
    fingerprint = hashlib.sha256(f"zip\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()
    stamps = {ZIP_STAMP: (st.st_size, st.st_mtime_ns)}
    return SourceListing("zip", sorted(images), skipped, fingerprint, stamps)


# ----------------------------------------------------------------------------- decoding


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
            kind = "folder" if stat.S_ISDIR(st.st_mode) else _file_type(st.st_mode)
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
