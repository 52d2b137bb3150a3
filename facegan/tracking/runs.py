"""Experiment tracking for one run: stats.jsonl (the source of truth for plots), mirrored to the
trackers the config names (facegan.tracking.trackers: TensorBoard by default)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facegan.errors import FaceganError

if TYPE_CHECKING:
    from facegan.config.schema import RunConfig
    from facegan.tracking.trackers import Tracker

STATS = "stats.jsonl"
RUN_RE = re.compile(r"^(\d{5})-")


def next_run_dir(root: Path, name: str) -> Path:
    """The `root/NNNNN-name` folder a new run would get now, without creating anything."""
    used = [int(m.group(1)) for p in root.iterdir() if (m := RUN_RE.match(p.name))] if root.is_dir() else []
    return root / f"{max(used, default=-1) + 1:05d}-{name}"


def new_run_dir(root: Path, name: str) -> Path:
    """Create `root/NNNNN-name` with the next free number (stylegan-style run numbering)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a file in the way, no permission, a read-only disk
        raise FaceganError(
            f"cannot create the runs folder {str(root)!r} ({err.strerror or err}); choose another --outdir"
        ) from None
    nxt = int(next_run_dir(root, name).name[:5])
    while True:
        path = root / f"{nxt:05d}-{name}"
        try:
            path.mkdir()
            return path
        except FileExistsError:  # another run started at the same moment
            nxt += 1


def latest_run_with_checkpoint(root: Path) -> Path | None:
    """The highest-numbered run folder under `root` that holds checkpoints/latest.pt."""
    if not root.is_dir():
        return None
    runs = sorted((int(m.group(1)), p) for p in root.iterdir() if (m := RUN_RE.match(p.name)))
    for _, path in reversed(runs):
        if (path / "checkpoints" / "latest.pt").is_file():
            return path
    return None


def read_stats(run_dir: Path) -> list[dict[str, Any]]:
    """All records of a run's stats.jsonl; a torn last line (from a hard kill) is ignored."""
    path = run_dir / STATS
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class RunLogger:
    """Appends step records to stats.jsonl and mirrors them to the trackers `cfg.train.trackers` names
    (facegan/tracking/trackers.py; without `cfg`, TensorBoard). Trackers inside the run folder are
    rewound with stats.jsonl on a rollback; remote ones are opened once and dropped if they fail."""

    def __init__(
        self, run_dir: Path, resume_step: int | None = None, cfg: RunConfig | None = None, quiet: bool = False
    ) -> None:
        from facegan.storage.files import SideWrites
        from facegan.tracking.trackers import open_trackers

        self.run_dir = run_dir
        self.path = run_dir / STATS
        self.side = SideWrites()  # a failed record is a warning: the run goes on
        self._torn = False  # a failed write may have left part of a line
        self.cfg = cfg
        self.names: tuple[str, ...] = cfg.train.trackers if cfg is not None else ("tensorboard",)
        self._open(resume_step)
        # Opened once per run: a rollback's rewind reopens stats.jsonl and TensorBoard, not these.
        try:
            self.trackers: list[Tracker] = open_trackers(run_dir, cfg, quiet) if cfg is not None else []
        except BaseException:
            self._close_files()
            raise

    def _open(self, resume_step: int | None) -> None:
        from facegan.networks.checkpoint import CKPT_KEPT
        from facegan.storage.files import atomic_write

        if resume_step is not None:
            # Drop records written after the checkpoint we resume from, so curves don't double back.
            # Atomically: on a full disk a plain rewrite would truncate the run's only stats record.
            kept = [r for r in read_stats(self.run_dir) if r.get("step", 0) <= resume_step]
            atomic_write(
                self.path, lambda tmp: tmp.write_text("".join(json.dumps(r) + "\n" for r in kept)), CKPT_KEPT
            )
        from facegan.tracking.trackers import open_in_run_folder

        try:
            self.file = open(self.path, "a", buffering=1)  # noqa: SIM115 — lives as long as the logger
            self.local: list[Tracker] = open_in_run_folder(self.run_dir, self.names, self.cfg, resume_step)
        except OSError as err:
            raise _log_error(self.run_dir, err) from None

    def log(self, record: dict[str, Any]) -> None:
        """Append `record`; on a failed write (disk full) warn once and go on without it."""
        if self.side.attempt("log record", lambda: self._log(record)) is None:
            self._torn = True

    def rewind(self, step: int) -> None:
        """Forget what was logged after `step` (the run rolled back to a checkpoint there)."""
        self._close_files()
        self._open(step)

    def _log(self, record: dict[str, Any]) -> bool:
        # After a failed write, a newline ends any torn fragment (read_stats skips the bad line).
        self.file.write(("\n" if self._torn else "") + json.dumps(record) + "\n")
        self._torn = False
        step = record["step"]
        scalars = {
            k: v for k, v in record.items() if k not in ("step", "time") and isinstance(v, (int, float))
        }
        for tracker in self.local:
            tracker.scalars(scalars, step)
        self._fan_out("scalars", scalars, step)
        return True

    def image(self, tag: str, img: Any, step: int, path: Path | None = None) -> None:
        """A sample grid: the image tensor `img` and its PNG file `path` (if written) to every tracker."""
        for tracker in self.local:
            tracker.image(tag, img, path, step)
        if path is not None:
            self._fan_out("image", tag, img, path, step)

    def metrics(self, results: dict[str, float], step: int) -> None:
        """Evaluation results (metrics.jsonl's record) to every tracker."""
        for tracker in self.local:
            tracker.metrics(results, step)
        self._fan_out("metrics", results, step)

    def artifact(self, path: Path, kind: str = "generator") -> None:
        """A file the run produced (the exported generator) to the trackers that keep artifacts."""
        self._fan_out("artifact", path, kind)

    def _fan_out(self, method: str, *args: Any) -> None:
        # A tracker that fails mid-run (a remote server went away) is dropped with one warning; the
        # run and its stats.jsonl, the record of truth, carry on.
        for tracker in list(self.trackers):
            try:
                getattr(tracker, method)(*args)
            except Exception as err:
                self.trackers.remove(tracker)
                print(
                    f"\nwarning: {type(tracker).__name__} failed ({type(err).__name__}: "
                    f"{str(err).splitlines()[0] if str(err) else ''}); it gets nothing more from this run, "
                    f"stats.jsonl has everything",
                    file=sys.stderr,
                )

    def _close_files(self) -> None:
        self.file.close()
        for tracker in self.local:
            tracker.close()

    def close(self) -> None:
        self._close_files()
        trackers, self.trackers = self.trackers, []
        for tracker in trackers:
            try:
                tracker.close()
            except Exception as err:  # the run's own files are closed; a tracker must not fail the run
                print(f"warning: closing {type(tracker).__name__} failed: {err}", file=sys.stderr)


def _log_error(where: Path, err: OSError) -> Exception:
    """A failed write of the run's logs as one line (disk full is the usual cause)."""
    from facegan.networks.checkpoint import CKPT_KEPT
    from facegan.storage.files import write_hint

    return FaceganError(
        f"could not write {where}: {err.strerror or err}; {CKPT_KEPT.format(hint=write_hint(err))}"
    )


def run_name(cfg: RunConfig) -> str:
    """A run folder's name after its data, preset and size, e.g. `celeba-dcgan64`."""
    data = Path(cfg.train.data).stem.replace("img_align_", "").replace("_", "-") or "data"
    return f"{data}-{cfg.preset}{cfg.model.size}"
