"""Experiment trackers: TensorBoard, MLflow and Weights & Biases, fed by the run's RunLogger.

`--tracker tensorboard,mlflow,wandb` picks them from the TRACKERS registry: a new tracker joins it in
one place, a factory decorated with `register_tracker` (see CONTRIBUTING.md). stats.jsonl stays the
run's own record; a tracker mirrors it: the resolved config as parameters, the stats scalars and
evaluation metrics as metrics, the sample grids and the exported generator as artifacts. Each library
is imported only when a run asks for it (`pip install 'facegan[mlflow]'` / `'facegan[wandb]'`), and
only rank 0 creates a RunLogger, so a distributed run logs once.

A resumed run continues the same tracker run: the ids are kept in the run folder's trackers.json.

MLflow goes to `MLFLOW_TRACKING_URI`, else MLflow's own local default (the `mlflow.db` SQLite store in
the working folder, artifacts under ./mlruns; `mlflow ui` there shows it), experiment
`MLFLOW_EXPERIMENT_NAME` or "facegan". W&B runs online when the user has logged in (`wandb login` or
WANDB_API_KEY) and offline otherwise, writing under the run folder's wandb/ for a later `wandb sync`;
`WANDB_MODE` and `WANDB_PROJECT` (default "facegan") are honoured.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from facegan.config.schema import RunConfig, section_types
from facegan.errors import FaceganError

TRACKERS_FILE = "trackers.json"

# TensorBoard tags named as in the seeds' printout.
TB_TAGS = {
    "loss_d": "Loss/D",
    "loss_g": "Loss/G",
    "d_real": "Score/D(x)",
    "d_fake_before": "Score/D(G(z)) before G step",
    "d_fake_after": "Score/D(G(z)) after D step",
    "img_per_s": "Speed/img_per_s",
}


class Tracker(Protocol):
    """What RunLogger hands to every tracker. `state` is what trackers.json keeps so a resumed run
    continues the same tracker run (None: nothing to keep)."""

    @property
    def state(self) -> dict[str, Any] | None: ...

    def scalars(self, values: dict[str, float], step: int) -> None: ...

    def metrics(self, results: dict[str, float], step: int) -> None: ...

    def image(self, tag: str, img: Any, path: Path | None, step: int) -> None: ...

    def artifact(self, path: Path, kind: str) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class TrackerContext:
    """What a tracker factory gets: the run folder and config, the tracker's previous state from
    trackers.json (a resume), whether to be quiet, and the step a resume or rollback restarts from."""

    run_dir: Path
    cfg: RunConfig | None
    previous: dict[str, Any] | None
    quiet: bool
    resume_step: int | None


@dataclass(frozen=True)
class TrackerKind:
    """A registered tracker. `package` is (module, facegan extra) checked before a run starts;
    `in_run_folder` trackers write inside the run folder like stats.jsonl: they open with it, reopen
    on a rollback (dropping later steps), and a failed write is the run's own warning. Others are
    remote: opened once per run, and dropped with one warning when they fail mid-run."""

    name: str
    open: Callable[[TrackerContext], Tracker]
    package: tuple[str, str] | None = None
    in_run_folder: bool = False


TRACKERS: dict[str, TrackerKind] = {}


def register_tracker(
    name: str, *, package: tuple[str, str] | None = None, in_run_folder: bool = False
) -> Callable[[Callable[[TrackerContext], Tracker]], Callable[[TrackerContext], Tracker]]:
    """Decorator: file a tracker factory under `name` (a --tracker choice)."""

    def add(factory: Callable[[TrackerContext], Tracker]) -> Callable[[TrackerContext], Tracker]:
        if name in TRACKERS:
            raise ValueError(f"tracker {name!r} is registered twice")
        TRACKERS[name] = TrackerKind(name, factory, package, in_run_folder)
        return factory

    return add


def tracker_kind(name: str) -> TrackerKind:
    """The registered tracker `name`; one FaceganError line naming the choices otherwise."""
    try:
        return TRACKERS[name]
    except KeyError:
        raise FaceganError(f"unknown tracker {name!r}; choose from: {', '.join(TRACKERS)}") from None


def check_available(names: tuple[str, ...]) -> None:
    """One line, before a run starts, for a tracker whose library is not installed."""
    for name in names:
        package = tracker_kind(name).package
        if package is not None and importlib.util.find_spec(package[0]) is None:
            module, extra = package
            raise FaceganError(
                f"--tracker {name} needs the {module} package, which is not installed: "
                f"pip install 'facegan[{extra}]' (or drop {name} from --tracker)"
            )


def flat_params(cfg: RunConfig) -> dict[str, str]:
    """The resolved config as flat `section.field` → text, the form tracker parameters take."""
    out = {"preset": cfg.preset}
    for section in section_types():
        for key, value in cfg.to_dict()[section].items():
            out[f"{section}.{key}"] = "" if value is None else str(value)
    return out


def read_state(run_dir: Path) -> dict[str, Any]:
    """The tracker run ids a run folder records ({} for a run that has none)."""
    try:
        raw = json.loads((run_dir / TRACKERS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return raw if isinstance(raw, dict) else {}


def open_in_run_folder(
    run_dir: Path, names: tuple[str, ...], cfg: RunConfig | None, resume_step: int | None
) -> list[Tracker]:
    """Open the trackers among `names` that write inside the run folder (TensorBoard)."""
    return [
        tracker_kind(n).open(TrackerContext(run_dir, cfg, None, False, resume_step))
        for n in names
        if tracker_kind(n).in_run_folder
    ]


def open_trackers(run_dir: Path, cfg: RunConfig, quiet: bool = False) -> list[Tracker]:
    """Start (or, when trackers.json names one, continue) a run in each remote tracker the config names."""
    from facegan.storage.files import atomic_write

    names = [n for n in cfg.train.trackers if not tracker_kind(n).in_run_folder]
    if not names:
        return []
    check_available(tuple(names))
    state = read_state(run_dir)
    opened: list[Tracker] = []
    try:
        for name in names:
            tracker = tracker_kind(name).open(TrackerContext(run_dir, cfg, state.get(name), quiet, None))
            state[name] = tracker.state
            opened.append(tracker)
    except FaceganError:
        for tracker in opened:
            tracker.close()
        raise
    atomic_write(run_dir / TRACKERS_FILE, lambda tmp: tmp.write_text(json.dumps(state, indent=1)))
    return opened


class TensorBoardTracker:
    """The run folder's tensorboard/ event files: the stats under the seeds' tags, evaluations under
    Metrics/, sample grids as images. A resume or rollback purges the events after its step."""

    state = None

    def __init__(self, run_dir: Path, resume_step: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=resume_step)

    def scalars(self, values: dict[str, float], step: int) -> None:
        for key, tag in TB_TAGS.items():
            if key in values:
                self.writer.add_scalar(tag, values[key], step)

    def metrics(self, results: dict[str, float], step: int) -> None:
        for key, value in results.items():
            self.writer.add_scalar(f"Metrics/{key}", value, step)

    def image(self, tag: str, img: Any, path: Path | None, step: int) -> None:
        self.writer.add_image(tag, img, step)

    def artifact(self, path: Path, kind: str) -> None:
        pass  # TensorBoard keeps no files; the exported generator is in the run folder already

    def close(self) -> None:
        self.writer.close()


@register_tracker("tensorboard", in_run_folder=True)
def _tensorboard(ctx: TrackerContext) -> Tracker:
    return TensorBoardTracker(ctx.run_dir, ctx.resume_step)


@register_tracker("mlflow", package=("mlflow", "mlflow"))
def _mlflow(ctx: TrackerContext) -> Tracker:
    assert ctx.cfg is not None
    return MLflowTracker(ctx.run_dir, ctx.cfg, ctx.previous)


@register_tracker("wandb", package=("wandb", "wandb"))
def _wandb(ctx: TrackerContext) -> Tracker:
    assert ctx.cfg is not None
    return WandbTracker(ctx.run_dir, ctx.cfg, ctx.previous, ctx.quiet)


def _warn(message: str) -> None:
    print(f"\nwarning: {message}", file=sys.stderr)


class MLflowTracker:
    """One MLflow run per facegan run, written through MlflowClient (no global active-run state)."""

    def __init__(self, run_dir: Path, cfg: RunConfig, previous: dict[str, Any] | None) -> None:
        import mlflow
        from mlflow import MlflowClient
        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException

        # A resume goes to the store the run started in, so it continues that run.
        self.uri = (previous or {}).get("tracking_uri") or mlflow.get_tracking_uri()
        try:
            self.client = MlflowClient(self.uri)
            run = self._continue(previous)
            if run is None:
                name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "facegan")
                exp = self.client.get_experiment_by_name(name)
                exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(name)
                run = self.client.create_run(
                    exp_id, run_name=run_dir.name, tags={"facegan.run_dir": str(run_dir.resolve())}
                )
            self.run_id = run.info.run_id
            # Parameters are immutable in MLflow: a resume logs new ones, and records the settings a
            # resume may change (length, device, intervals) as tags rather than failing.
            logged, params = run.data.params, flat_params(cfg)
            new = [Param(k, v) for k, v in params.items() if k not in logged]
            for start in range(0, len(new), 100):  # MLflow takes at most 100 parameters per batch
                self.client.log_batch(self.run_id, params=new[start : start + 100])
            for key, value in params.items():
                if key in logged and logged[key] != value:
                    self.client.set_tag(self.run_id, f"resumed.{key}", value)
            self.client.log_artifact(self.run_id, str(run_dir / "config.json"))
        except MlflowException as err:
            raise FaceganError(
                f"MLflow tracking at {self.uri!r} failed: {err.message.splitlines()[0]}"
            ) from None
        self.state = {"tracking_uri": self.uri, "run_id": self.run_id}

    def _continue(self, previous: dict[str, Any] | None) -> Any:
        from mlflow.exceptions import MlflowException

        if not previous or not previous.get("run_id"):
            return None
        try:
            run = self.client.get_run(previous["run_id"])
        except MlflowException:
            _warn(f"MLflow run {previous['run_id']} is gone from {self.uri!r}; starting a new one")
            return None
        self.client.update_run(run.info.run_id, status="RUNNING")
        return run

    def scalars(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step) for k, v in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def metrics(self, results: dict[str, float], step: int) -> None:
        self.scalars({f"eval/{k}": v for k, v in results.items()}, step)

    def image(self, tag: str, img: Any, path: Path | None, step: int) -> None:
        if path is not None:
            self.client.log_artifact(self.run_id, str(path), "samples")

    def artifact(self, path: Path, kind: str) -> None:
        self.client.log_artifact(self.run_id, str(path), kind)

    def close(self) -> None:
        self.client.set_terminated(self.run_id, "FINISHED")


def wandb_mode() -> Literal["online", "offline"] | None:
    """W&B's mode: WANDB_MODE when set (None: wandb reads it), online when logged in, else offline."""
    if os.environ.get("WANDB_MODE"):
        return None
    import wandb

    # verify=False: a local check of the configured credentials (env, settings, .netrc), no network.
    return "online" if wandb.login(verify=False, prompt=False) else "offline"


class WandbTracker:
    """One W&B run per facegan run, its files under the run folder's wandb/."""

    def __init__(self, run_dir: Path, cfg: RunConfig, previous: dict[str, Any] | None, quiet: bool) -> None:
        import wandb

        run_id = (previous or {}).get("id")
        mode = wandb_mode()
        try:
            self.run = wandb.init(
                project=None if os.environ.get("WANDB_PROJECT") else "facegan",
                name=run_dir.name,
                id=run_id,
                resume="allow" if run_id else None,
                dir=str(run_dir),
                mode=mode,
                config=None if run_id else cfg.to_dict(),
                # console off: W&B must not wrap stdout/stderr, which the progress bar and errors use.
                settings=wandb.Settings(console="off", silent=quiet),
            )
        except wandb.errors.Error as err:
            raise FaceganError(
                f"W&B could not start a run ({str(err).splitlines()[0]}); set "
                f"WANDB_MODE=offline to log locally"
            ) from None
        if run_id:  # a resume may change the run's length, device or intervals
            self.run.config.update(cfg.to_dict(), allow_val_change=True)
        # facegan's step is the x-axis: W&B's own step only grows, and a resume or a rollback goes back.
        self.run.define_metric("step", hidden=True)
        self.run.define_metric("*", step_metric="step")
        self.state = {"id": self.run.id, "project": self.run.project}

    def scalars(self, values: dict[str, float], step: int) -> None:
        self.run.log({**values, "step": step})

    def metrics(self, results: dict[str, float], step: int) -> None:
        self.scalars({f"eval/{k}": v for k, v in results.items()}, step)

    def image(self, tag: str, img: Any, path: Path | None, step: int) -> None:
        import wandb

        if path is not None:
            self.run.log({tag: wandb.Image(str(path)), "step": step})

    def artifact(self, path: Path, kind: str) -> None:
        import wandb

        art = wandb.Artifact(f"{kind}-{self.run.id}", type="model")
        art.add_file(str(path))
        self.run.log_artifact(art)

    def close(self) -> None:
        self.run.finish()
