"""Building a folder beside its output, safely against interruption and a twin process: a uniquely named
hidden work folder (`.NAME.tmp-HOST-PID-RANDOM`, so a clean-up can tell whose it is), an flock on
`.NAME.lock` held while building and publishing, and the work folders of killed builds on this host
cleared. `facegan prepare` builds datasets this way (facegan.data.prepare).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from facegan.data.sources import printable
from facegan.errors import FaceganError

try:
    import fcntl
except ImportError:  # Windows: no flock; preparing is still atomic, just not guarded against a twin
    fcntl = None  # type: ignore[assignment]


def beside(out: Path, suffix: str) -> Path:
    """A hidden path next to `out` (same folder, so same file system: renames into `out` are atomic)."""
    out = Path(os.path.abspath(out))
    return out.parent / f".{out.name}{suffix}"


@contextlib.contextmanager
def output_lock(out: Path, quiet: bool) -> Iterator[bool]:
    """Hold an exclusive flock on `.NAME.lock` beside `out`: one preparer of `out` at a time. Yields
    whether another process held it first (so what was read before may have changed meanwhile)."""
    lock = beside(out, ".lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise FaceganError(
            f"cannot create {str(lock)!r}: {err.strerror}; the folder that holds the output must be writable"
        ) from None
    waited = False
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not quiet:
                    print(
                        f"waiting for another process that is preparing {printable(str(out))} ...",
                        file=sys.stderr,
                    )
                fcntl.flock(fd, fcntl.LOCK_EX)  # released by the kernel even if that process is killed
                waited = True
        remove_dead_builds(out)
        yield waited
    finally:
        os.close(fd)  # the lock file stays: deleting it would let a waiter lock an unlinked file


def new_work_dir(out: Path) -> Path:
    """A fresh, uniquely named build folder beside `out` (host + pid say whose it is, for clean-up)."""
    work = beside(out, f".tmp-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        work.mkdir()
    except OSError as err:
        raise FaceganError(
            f"cannot create {str(work)!r}: {err.strerror}; the folder that holds the output must be writable"
        ) from None
    return work


def remove_dead_builds(out: Path) -> None:
    """Delete build folders of `out` left by killed prepares on this host (never a live process's work)."""
    prefix, host = beside(out, ".tmp-").name, socket.gethostname()
    with contextlib.suppress(OSError):
        for path in beside(out, "").parent.iterdir():
            if path.name.startswith(prefix):
                owner = path.name[len(prefix) :].rsplit("-", 1)[0]  # HOST-PID
                who, _, pid = owner.rpartition("-")
                if who == host and pid.isdigit() and not alive(int(pid)):
                    shutil.rmtree(path, ignore_errors=True)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True
