"""Listing image sources for `facegan prepare`: a folder (recursively) or a zip, fingerprinted.

Nothing that is not packed vanishes silently: every such file is listed with a reason — not an image
(extension), hidden file or folder, FIFO/socket/device, broken symlink, symlink to a folder or to a
file outside the source, unreadable folder, zip member with an unsafe ("../" or absolute) name,
duplicate zip name — or, when it is read (facegan.data.decode), encrypted or unsupported-compression
zip member, unreadable, not in an accepted format, truncated, too small, too large or too elongated.

Links: a symlink is followed only to a file inside the source (checked when listing and again when
reading, on the resolved path), so a link cannot pack a file from elsewhere on the machine.

Names in manifests and messages are printable UTF-8 (undecodable bytes as \\xNN, control characters
escaped), so a non-UTF-8 file name can never crash a summary line.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from facegan.errors import FaceganError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm")
SYNTHETIC = "synthetic"
ZIP_STAMP = ""  # the stamps key of a zip's own (size, mtime): no member can have an empty name
OUTSIDE = "symlink to a file outside the source (not followed)"


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


def file_type(mode: int) -> str:
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
                    skipped.append(skip(name, f"not a regular file ({file_type(st.st_mode)})"))
                else:
                    files.append((name, st.st_size, st.st_mtime_ns))
    files.sort()
    skipped.sort(key=lambda s: s["file"])
    digest = hashlib.sha256()
    for name, size, mtime_ns in files:
        digest.update(os.fsencode(name) + f"\0{size}\0{mtime_ns}\n".encode())
    for item in skipped:  # a hidden file or FIFO appearing also changes the manifest
        digest.update(f"{item['file']}\0{item['reason']}\n".encode())
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
