"""Files facegan writes: atomically (temp file, fsync, rename), and its caches under one root.

Every file a user or a later run relies on (checkpoints, exports, run logs rewritten on resume, the
real-feature cache, ONNX and Hub exports) goes through `atomic_write`: a failed write (disk full,
Ctrl-C, a killed process) leaves the previous file as it was and at most a hidden temp file, which
`remove_stale_temps` clears once its writer is gone. Prepared datasets are folders, built beside
their target and published by rename (facegan.data.prepare), with their files synced by `fsync_file`.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from facegan.errors import FaceganError

TEMP_MARK = ".tmp-"  # a temp file is `.NAME.tmp-PID` beside NAME


def cache_root() -> Path:
    """Where facegan keeps what it can rebuild (prepared datasets, real-image features):
    $FACEGAN_CACHE, else $XDG_CACHE_HOME/facegan, else ~/.cache/facegan."""
    base = os.environ.get("FACEGAN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "facegan"
    )
    return Path(base)


def temp_path(path: Path) -> Path:
    """The hidden temp file beside `path` that this process writes before renaming it over `path`."""
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}")


def atomic_write(
    path: Path, write: Callable[[Path], Any], then: str = "any previous file there is intact — {hint}"
) -> None:
    """Let `write(tmp)` fill a temp file beside `path`, then fsync, give it the umask's permissions and
    rename it over `path`. Any failure removes the temp file, leaves `path` as it was and raises one
    FaceganError line: "could not write PATH: reason; " + `then` (with {hint} filled in)."""
    tmp = temp_path(path)
    # A writer of this same file killed mid-write (SIGKILL, power loss) left its temp file behind.
    remove_stale_temps(path.parent, path.name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        fsync_file(tmp)
        # Temp-file writers (safetensors among them) may create 0600 files; a finished file gets the
        # permissions a plain open() would give it.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(err, FaceganError) or not isinstance(err, Exception):
            raise  # already one clear line, or Ctrl-C / SystemExit: not a write failure to explain
        raise write_error(path, err, then) from None
    fsync_dir(path.parent)


class SideWrites:
    """The writes a run can do without: sample grids, figures, log records. Each failure (a full disk,
    a lost mount) is one warning line per kind of write, and the run goes on; its checkpoints, the
    record that matters, are written and checked on their own."""

    def __init__(self) -> None:
        self.failed: set[str] = set()

    def attempt(self, kind: str, write: Callable[[], Any]) -> Any:
        """`write()`'s result, or None when it failed with an OSError or a failed-write FaceganError."""
        try:
            return write()
        except (OSError, FaceganError) as err:
            if kind not in self.failed:
                self.failed.add(kind)
                reason = write_reason(err) if isinstance(err, OSError) else str(err).split(";")[0]
                with contextlib.suppress(OSError):  # the terminal may be gone too
                    print(
                        f"\nwarning: could not write the {kind} ({reason}); training goes on and its "
                        f"checkpoints are unaffected (further {kind} failures are not reported)",
                        file=sys.stderr,
                    )
            return None


def write_error(
    path: Path, err: BaseException, then: str = "any previous file there is intact — {hint}"
) -> FaceganError:
    """One line for a failed write of `path`: what went wrong, and `then` with a {hint} of what to do."""
    return FaceganError(f"could not write {path}: {write_reason(err)}; {then.format(hint=write_hint(err))}")


def write_reason(err: BaseException) -> str:
    """The short reason of a failed write (the OS's words where there are some)."""
    # torch.save reports a full disk as RuntimeError and safetensors as SafetensorError, not OSError.
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    text = str(err).strip()
    return text.splitlines()[0][:160] if text else type(err).__name__


def write_hint(err: BaseException) -> str:
    """What the user can do about a failed write."""
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return "free some disk space"
    if isinstance(err, OSError) and err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "check the folder's permissions"
    return "check the free disk space and that the folder is writable"


def remove_stale_temps(folder: Path, name: str | None = None) -> None:
    """Delete the temp files of writers that died mid-write (SIGKILL, power loss): they are never
    valid files, and each can be as large as one. A live writer's file (its pid runs) is kept. With
    `name`, only the temp files of that file (`.NAME.tmp-PID`): a folder facegan does not own, such
    as an export's, keeps everything else."""
    if not folder.is_dir():
        return
    for tmp in folder.glob(f".{glob.escape(name) if name else '*'}{TEMP_MARK}*"):
        pid = tmp.name.rpartition(TEMP_MARK)[2]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:  # no such process: the writer is gone
            with contextlib.suppress(OSError):
                tmp.unlink()
        except OSError:  # alive under another user (EPERM): not ours to remove
            pass


def fsync_file(path: Path) -> None:
    """Flush `path`'s data to the disk, so a rename that publishes it cannot outlive its contents."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (best effort: not every file system can sync a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    """The process umask. /proc avoids os.umask's set-and-restore, which races with other threads
    creating files in between."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old
