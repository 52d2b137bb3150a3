"""The training loop: it only orchestrates data, step, logging, samples and checkpoints."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import random
import signal
import sys
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch
from torchvision.utils import save_image
from tqdm import tqdm

from facegan import plots
from facegan.checkpoint import (
    atomic_write,
    capture_rng,
    check_state,
    checkpoint_config,
    export_generator,
    link_as,
    load_checkpoint,
    load_state,
    restore_rng,
    save_checkpoint,
)
from facegan.config import RunConfig, section_types
from facegan.data import SYNTHETIC, BatchSource, PackedDataset, is_prepared, real_sample, resolve_dataset
from facegan.ema import EMA
from facegan.errors import FaceganError
from facegan.generate import grid
from facegan.models import build_models
from facegan.perf import Perf, for_inference, make_optimizers, make_scaler, prepare_models
from facegan.perf import resolve as resolve_perf
from facegan.step import StepStats, sample_latent, train_step
from facegan.tracking import RunLogger, latest_run_with_checkpoint, new_run_dir, next_run_dir


def pick_device(name: str) -> torch.device:
    """'auto' → CUDA, then MPS, then CPU; otherwise the named device, checked to exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise FaceganError(f"unknown --device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FaceganError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise FaceganError("--device mps was asked for but MPS is not available; use --device cpu")
    return dev


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    interrupted: bool
    signum: int | None = None  # the signal that stopped the run early (exit status 128 + signum)


class _StopFlag:
    """Turns SIGINT/SIGTERM/SIGHUP into a flag the loop checks between steps, so a checkpoint is written
    from a consistent state instead of dying mid-update. SIGHUP is a dropped SSH session or closed
    terminal: without it here, everything since the last checkpoint would be lost."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        # SIGHUP does not exist on Windows.
        stops = (signal.SIGINT, signal.SIGTERM, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else []))
        for sig in stops:
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C means "really stop now"
        self.signum = signum

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def resolve_resume(resume: str, runs_root: Path) -> Path:
    """Path of the checkpoint file `--resume auto|PATH` refers to."""
    if resume == "auto":
        run = latest_run_with_checkpoint(runs_root)
        if run is None:
            raise FaceganError(f"--resume auto found no run with a checkpoint under {str(runs_root)!r}")
        return run / "checkpoints" / "latest.pt"
    path = Path(resume)
    if path.is_dir():
        path = path / "checkpoints" / "latest.pt"
    if not path.is_file():
        raise FaceganError(f"--resume {resume!r}: no checkpoint there; pass a .pt file, a run folder or auto")
    return path


def run_name(cfg: RunConfig) -> str:
    data = Path(cfg.train.data).stem.replace("img_align_", "").replace("_", "-") or "data"
    return f"{data}-{cfg.preset}{cfg.model.size}"


def check_resume_overrides(cfg: RunConfig, overrides: dict[str, Any], resumable: Collection[str],
                           dataset_hash: str | None) -> dict[str, Any]:
    """The `overrides` (flat config fields, plus "preset") a resume of `cfg` may apply, minus "preset".

    Fields in `resumable` may change. Any other flag may be repeated with the checkpoint's value (so
    the original command plus --resume works) but not changed. "data" may point somewhere new: train()
    then checks that it holds the same images (content hash) and records the new path.
    """
    current: dict[str, Any] = {"preset": cfg.preset}
    for section in section_types():
        current.update(dataclasses.asdict(getattr(cfg, section)))
    changed = [k for k, v in overrides.items()
               if k not in resumable and k != "data" and k in current and current[k] != v]
    if changed:
        listed = ", ".join(f"--{k.replace('_', '-')} (checkpoint {current[k]!r}, given {overrides[k]!r})"
                           for k in changed)
        allowed = ", ".join("--" + f.replace("_", "-") for f in sorted(resumable))
        raise FaceganError(f"{listed}: cannot change when resuming (the checkpoint's config is used); drop "
                           f"{'it' if len(changed) == 1 else 'them'} or start a new run; only {allowed} can")
    if overrides.get("data", cfg.train.data) != cfg.train.data and dataset_hash is None:
        raise FaceganError(f"this checkpoint records no dataset hash, so --data {overrides['data']!r} cannot "
                           f"be checked against {cfg.train.data!r}; resume without --data")
    return {k: v for k, v in overrides.items() if k != "preset"}


def train(cfg: RunConfig, runs_root: Path = Path("runs"), resume: str | None = None,
          overrides_on_resume: dict[str, Any] | None = None, quiet: bool = False,
          resumable: Collection[str] | None = None) -> TrainResult:
    """Train a GAN as `cfg` says (or continue the checkpointed run `resume`); returns where it went.

    With `resumable`, `overrides_on_resume` go through `check_resume_overrides`; without, all apply."""
    ckpt: dict[str, Any] | None = None
    if resume:
        ckpt_path = resolve_resume(resume, runs_root)
        ckpt = load_checkpoint(ckpt_path)
        cfg = checkpoint_config(ckpt, ckpt_path)
        overrides_on_resume = overrides_on_resume or {}
        if resumable is not None:
            overrides_on_resume = check_resume_overrides(cfg, overrides_on_resume, resumable,
                                                         ckpt.get("dataset_hash"))
        if overrides_on_resume:
            from facegan.config import with_overrides

            cfg = with_overrides(cfg, overrides_on_resume)
        if "data" not in overrides_on_resume and cfg.train.data != SYNTHETIC \
                and not Path(cfg.train.data).exists():
            raise FaceganError(f"the dataset this run was trained on, {cfg.train.data!r}, is gone; if it "
                               f"moved, resume with --data NEW_PATH (it must hold the same images)")

    if ckpt is not None:
        _check_resume_state(cfg, ckpt, ckpt_path)
    device = pick_device(cfg.train.device)
    tc = cfg.train
    if tc.eval_every:
        _check_eval_setup(tc.eval_metrics, tc.inception_weights)
    ds = resolve_dataset(tc.data, cfg.model.size, synthetic_count=tc.synthetic_count, seed=tc.seed,
                         quiet=quiet)
    if ckpt is not None and ckpt.get("dataset_hash") not in (None, ds.content_hash):
        raise FaceganError(
            f"the dataset {tc.data!r} differs from the one this checkpoint was trained on "
            f"({ckpt.get('dataset_hash')}); resume with the original data"
        )
    perf = resolve_perf(cfg.perf, device)
    # The config records what "auto" chose on this device (e.g. amp "bf16"), so the run folder and every
    # checkpoint say how it was computed, and a resume keeps the same numerics unless told otherwise.
    cfg = cfg.replace(perf=perf.as_config(cfg.perf.compile))
    batches = BatchSource(ds, tc.batch_size, tc.seed, device, hflip=tc.hflip, resident=perf.resident,
                          channels_last=perf.channels_last)
    total_steps = tc.steps if tc.steps is not None else tc.epochs * batches.steps_per_epoch
    if not quiet:  # after every input check, so a bad run still answers in one line
        print(f"device {device}: {perf.describe()}", file=sys.stderr)

    # Seed the global RNGs (build_models uses a private one), so anything drawing from them is
    # reproducible and the RNG states checkpoints carry are the run's, not the process's (a resume
    # restores them below).
    random.seed(tc.seed)
    np.random.seed(tc.seed % 2**32)
    torch.manual_seed(tc.seed)
    g, d = build_models(cfg.model, seed=tc.seed, gan=cfg.gan)
    g, d = g.to(device), d.to(device)
    g_step, d_step = prepare_models(g, d, perf)
    ema = EMA(g, cfg.gan.ema_kimg, tc.batch_size) if cfg.gan.ema_kimg > 0 else None
    opt_g, opt_d = make_optimizers(g, d, cfg.optim, perf)
    scaler = make_scaler(perf, device)
    step_rng = torch.Generator(device).manual_seed(tc.seed)
    # Fixed noise for the sample grids, the same for every run with this seed (the seeds' fixed_noise).
    fixed_z = sample_latent(tc.num_samples, cfg.model.latent_dim,
                            torch.Generator().manual_seed(tc.seed + 1)).to(device)

    step = 0
    best: dict[str, Any] | None = None
    if ckpt is not None:
        step = _load_training_state(ckpt, str(ckpt_path), cfg, g, d, ema, opt_g, opt_d, scaler, step_rng)
        best = ckpt.get("best") or None
    if ckpt is not None and ckpt_path.parent.name == "checkpoints":
        run_dir = ckpt_path.parent.parent  # continue in the run's own folder
    else:
        run_dir = new_run_dir(runs_root, run_name(cfg))
        _write_run_files(run_dir, cfg, ds, g, d)
    # Atomic: a resume on a full disk must not truncate the run's config. Resumes record any new length.
    atomic_write(run_dir / "config.json", lambda tmp: tmp.write_text(cfg.to_json()))

    logger = RunLogger(run_dir, resume_step=step if ckpt is not None else None)
    state = _LoopState(cfg, run_dir, g, d, opt_g, opt_d, step_rng, fixed_z, ds, batches, logger,
                       (g_step, d_step), perf, scaler, ema, best)
    if ckpt is not None:  # the rollback target until this run writes a checkpoint of its own
        state.last_good = ckpt_path
        state.guard = _Guard.from_state(ckpt.get("guard"))
    interrupted = False
    with _StopFlag() as stop:
        try:
            if step >= total_steps and not quiet:
                print(f"{run_dir}: already at step {step} of {total_steps}; refreshing its figures and "
                      f"export only (pass a larger --steps or --epochs to train on)")
            step = state.run(step, total_steps, stop, quiet)
            # End-of-run artifacts also after Ctrl-C/SIGTERM: the checkpoint is already safe, and the
            # figures and export then show exactly what it holds.
            state.finish(step)
        finally:
            logger.close()
        if stop.signum is not None:
            interrupted = True
            name = signal.Signals(stop.signum).name
            # After SIGHUP the terminal may be gone (EIO); the checkpoint is safe, so never fail here.
            with contextlib.suppress(OSError):
                print(f"\n{name}: stopped at step {step}; checkpoint saved in {run_dir / 'checkpoints'}; "
                      f"continue with: facegan train --resume {run_dir}", file=sys.stderr)
    return TrainResult(run_dir, step, interrupted, stop.signum)


RESUME_KEYS = ("G", "D", "opt_g", "opt_d", "rng", "step")


def _load_training_state(ckpt: dict[str, Any], source: str, cfg: RunConfig, g: torch.nn.Module,
                         d: torch.nn.Module, ema: EMA | None, opt_g: torch.optim.Optimizer,
                         opt_d: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None,
                         step_rng: torch.Generator) -> int:
    """Put a checkpoint's training state (weights, optimizers, scaler, RNGs) into the live objects, at
    the learning rates its divergence guard had lowered them to; returns its step."""
    load_state(g, ckpt["G"], "generator", source)
    load_state(d, ckpt["D"], "discriminator", source)
    if ema is not None:
        if "G_ema" not in ckpt:
            raise FaceganError(f"{source!r} has no G_ema weights although its config asks for "
                               f"an EMA generator; the checkpoint is incomplete")
        load_state(ema.model, ckpt["G_ema"], "EMA generator", source)
    opt_g.load_state_dict(ckpt["opt_g"])
    opt_d.load_state_dict(ckpt["opt_d"])
    _set_lr(opt_g, opt_d, cfg, _Guard.from_state(ckpt.get("guard")).lr_scale)
    if scaler is not None and ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    restore_rng(ckpt["rng"], step_rng)
    return int(ckpt["step"])


def _set_lr(opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer, cfg: RunConfig, scale: float) -> None:
    for opt, lr in ((opt_g, cfg.optim.lr_g), (opt_d, cfg.optim.lr_d)):
        for group in opt.param_groups:
            group["lr"] = lr * scale


@dataclass
class _Guard:
    """What the divergence guard has done so far; saved in every checkpoint so a resume repeats it:
    the learning-rate scale, how many rollbacks the run made, and the step ranges it skips."""

    lr_scale: float = 1.0
    rollbacks: int = 0
    skip: list[tuple[int, int]] = dataclasses.field(default_factory=list)  # inclusive step ranges

    @classmethod
    def from_state(cls, raw: Any) -> _Guard:
        if not isinstance(raw, dict):  # a checkpoint written before the guard existed
            return cls()
        return cls(float(raw.get("lr_scale", 1.0)), int(raw.get("rollbacks", 0)),
                   [(int(a), int(b)) for a, b in raw.get("skip", [])])

    def state(self) -> dict[str, Any]:
        return {"lr_scale": self.lr_scale, "rollbacks": self.rollbacks, "skip": [list(r) for r in self.skip]}

    def skips(self, step: int) -> bool:
        """Whether the batch of step index `step` (the step that makes `step + 1`) is skipped."""
        return any(a <= step + 1 <= b for a, b in self.skip)


def _check_resume_state(cfg: RunConfig, ckpt: dict[str, Any], path: Path) -> None:
    """Refuse a checkpoint whose weights do not fit its own config, before the real models are built:
    the expected shapes come from G and D built on the meta device, which allocates nothing."""
    missing = [k for k in RESUME_KEYS if k not in ckpt]
    if missing:
        raise FaceganError(f"{str(path)!r} has no {missing[0]!r} entry; the checkpoint is incomplete — use "
                           f"another file from the run's checkpoints/ folder")
    with torch.device("meta"):
        g, d = build_models(cfg.model, seed=cfg.train.seed, gan=cfg.gan)
    check_state(g, ckpt["G"], "generator", path)
    check_state(d, ckpt["D"], "discriminator", path)
    if cfg.gan.ema_kimg > 0 and "G_ema" in ckpt:  # a missing G_ema is reported where it is loaded
        check_state(g, ckpt["G_ema"], "EMA generator", path)


def dry_run(cfg: RunConfig, runs_root: Path = Path("runs")) -> list[str]:
    """Check that `train(cfg)` would start, writing nothing: resolve the device and speed settings,
    count the data, build the models and run one training step on a random batch of 2. Returns the
    plan as lines to print."""
    tc = cfg.train
    device = pick_device(tc.device)
    if tc.eval_every:
        _check_eval_setup(tc.eval_metrics, tc.inception_weights)
    count, data = _dataset_plan(tc.data, cfg.model.size, tc.synthetic_count)
    if tc.batch_size > count:
        raise FaceganError(f"--batch-size {tc.batch_size} is larger than the dataset ({count} images)")
    per_epoch = count // tc.batch_size
    total = tc.steps if tc.steps is not None else tc.epochs * per_epoch
    length = "--steps" if tc.steps is not None else f"{tc.epochs} epochs of {per_epoch:,}"
    perf = resolve_perf(cfg.perf, device)
    # The models' own seeded generator and a private step rng: the process's global RNGs stay untouched.
    g, d = build_models(cfg.model, seed=tc.seed, gan=cfg.gan)
    g, d = g.to(device), d.to(device)
    g_step, d_step = prepare_models(g, d, perf)
    ema = EMA(g, cfg.gan.ema_kimg, tc.batch_size) if cfg.gan.ema_kimg > 0 else None
    opt_g, opt_d = make_optimizers(g, d, cfg.optim, perf)
    rng = torch.Generator(device).manual_seed(tc.seed)
    shape = (2, cfg.model.channels, cfg.model.size, cfg.model.size)
    real = torch.rand(shape, generator=rng, device=device) * 2 - 1
    if perf.channels_last:
        real = real.contiguous(memory_format=torch.channels_last)
    t0 = time.perf_counter()
    # Step 0 also runs the lazy R1/R2 penalties, so every configured term is exercised.
    stats = train_step(g_step, d_step, opt_g, opt_d, real, rng, gan=cfg.gan, step=0,
                       amp_dtype=perf.amp_dtype, scaler=make_scaler(perf, device))
    if ema is not None:
        ema.update(g)
    loss_d, loss_g = float(stats.loss_d), float(stats.loss_g)
    seconds = time.perf_counter() - t0
    if not (np.isfinite(loss_d) and np.isfinite(loss_g)):
        raise FaceganError(f"the first step on a random batch gave Loss_D {loss_d}, Loss_G {loss_g}; "
                           f"check the learning rates and loss settings")
    n_g = sum(p.numel() for p in g.parameters())
    n_d = sum(p.numel() for p in d.parameters())
    return [
        f"preset         {cfg.preset} ({cfg.model.arch}, {cfg.model.size}px, loss {cfg.gan.loss})",
        f"device         {device}: {perf.describe()}",
        f"data           {data}",
        f"steps          {total:,} ({length} steps, batch {tc.batch_size})",
        f"run folder     {next_run_dir(runs_root, run_name(cfg))}",
        f"generator      {n_g:,} parameters",
        f"discriminator  {n_d:,} parameters",
        f"first step     ok on a random batch of 2 in {seconds:.2f} s "
        f"(Loss_D {loss_d:.3f}, Loss_G {loss_g:.3f})",
        "dry run: nothing was written",
    ]


def _dataset_plan(data: str, size: int, synthetic_count: int) -> tuple[int, str]:
    """(image count, description) of `data`, without preparing or caching anything."""
    if data == SYNTHETIC:
        return synthetic_count, (f"{synthetic_count:,} synthetic faces (drawn into the dataset cache on "
                                 f"first use)")
    if is_prepared(data):
        ds = resolve_dataset(data, size)  # opens a prepared folder as it is; checks its image size
        return len(ds), f"{data} (prepared, {len(ds):,} images)"
    from facegan.data import _listing  # the same checks a real run makes: exists, holds images

    listing = _listing(data, synthetic_count)
    return len(listing.images), (f"{data} ({listing.kind}, {len(listing.images):,} image files, prepared "
                                 f"into the dataset cache on first use)")


def _check_eval_setup(metrics: str, inception_weights: str | None) -> None:
    """Fail before training, not hours in, on an unknown metric or missing Inception weights."""
    from facegan.metrics import parse_metrics, resolve_weights

    if any(p.kind in ("fid", "kid") for p in parse_metrics(metrics.split(","))):
        resolve_weights(inception_weights)


def _write_run_files(run_dir: Path, cfg: RunConfig, ds: PackedDataset, g: torch.nn.Module,
                     d: torch.nn.Module) -> None:
    import json

    (run_dir / "dataset_manifest.json").write_text(json.dumps(ds.manifest, indent=1))
    n_g = sum(p.numel() for p in g.parameters())
    n_d = sum(p.numel() for p in d.parameters())
    (run_dir / "architecture.txt").write_text(
        f"Generator ({n_g:,} parameters)\n{g}\n\nDiscriminator ({n_d:,} parameters)\n{d}\n"
    )


class _LoopState:
    """Bundles what the loop touches, so `run` reads as the orchestration it is."""

    def __init__(self, cfg: RunConfig, run_dir: Path, g: torch.nn.Module, d: torch.nn.Module,
                 opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer, step_rng: torch.Generator,
                 fixed_z: torch.Tensor, ds: PackedDataset, batches: BatchSource, logger: RunLogger,
                 step_modules: tuple[torch.nn.Module, torch.nn.Module], perf: Perf,
                 scaler: torch.amp.GradScaler | None, ema: EMA | None = None,
                 best: dict[str, Any] | None = None) -> None:
        self.cfg, self.run_dir, self.g, self.d = cfg, run_dir, g, d
        self.opt_g, self.opt_d, self.step_rng, self.fixed_z = opt_g, opt_d, step_rng, fixed_z
        self.ds, self.batches, self.logger = ds, batches, logger
        # The modules the step calls: G and D themselves, or their torch.compile wrappers.
        self.g_step, self.d_step = step_modules
        self.perf, self.scaler, self.ema = perf, scaler, ema
        self.best = best  # {"step", "metric", "value", "score"} of the best evaluation so far
        self._extractor: Any = None  # the Inception network, loaded once at the first FID/KID eval
        # Divergence guard: the checkpoint a NaN/inf rolls back to (None: the in-memory `initial` state
        # of a run that has not saved one yet), and a device-side flag that every step ANDs its stats'
        # finiteness into, so detecting a NaN costs no host sync until the next log/checkpoint.
        self.guard = _Guard()
        self.last_good: Path | None = None
        self.initial: dict[str, Any] | None = None
        self.finite = torch.ones((), dtype=torch.bool, device=fixed_z.device)
        self.checked = 0  # the last step at which the flag and the weights were seen finite
        self.stop: _StopFlag | None = None  # set by `run`; an evaluation polls it between batches

    def run(self, step: int, total: int, stop: _StopFlag, quiet: bool) -> int:
        tc = self.cfg.train
        spe = self.batches.steps_per_epoch
        sums: torch.Tensor | None = None
        window_steps, window_t0 = 0, time.perf_counter()
        bar = tqdm(total=total, initial=step, unit="step", disable=quiet, file=sys.stderr,
                   dynamic_ncols=True, desc=f"train {self.perf.precision}")
        self.g.train()
        self.d.train()
        self.checked, self.stop = step, stop
        if self.last_good is None:
            self.initial = copy.deepcopy(self.state(step))
        while step < total and stop.signum is None:
            if not self.guard.skips(step):  # skipped: a batch range that made this run diverge before
                stats = train_step(self.g_step, self.d_step, self.opt_g, self.opt_d,
                                   self.batches.batch(step), self.step_rng, gan=self.cfg.gan, step=step,
                                   amp_dtype=self.perf.amp_dtype, scaler=self.scaler)
                if self.ema is not None:
                    self.ema.update(self.g)
                # Accumulate on the device; reading back only at log time keeps the step free of syncs.
                vec = torch.stack(list(stats))
                self.finite &= torch.isfinite(vec).all()
                sums = vec if sums is None else sums + vec
                window_steps += 1
            step += 1
            bar.update(1)
            log_due = step % tc.log_every == 0 or step == total
            sample_due = step % tc.sample_every == 0 or step == total
            eval_due = tc.eval_every > 0 and (step % tc.eval_every == 0 or step == total)
            ckpt_due = step % tc.ckpt_every == 0 or step == total or stop.signum is not None
            # Every host sync point first checks the guard, so nothing non-finite is logged as a
            # record, evaluated or saved.
            if log_due or sample_due or eval_due or ckpt_due:
                if not self.healthy():
                    step = self.rollback(step)
                    sums, window_steps, window_t0 = None, 0, time.perf_counter()
                    bar.n = step
                    bar.refresh()
                    continue
                self.checked = step
            if log_due and sums is not None:
                now = time.perf_counter()
                means = (sums / window_steps).tolist()
                record = {"step": step, "epoch": (step - 1) // spe, "kimg": step * tc.batch_size / 1000,
                          **dict(zip(StepStats._fields, means)),
                          "img_per_s": window_steps * tc.batch_size / max(now - window_t0, 1e-9),
                          "time": time.time()}
                self.logger.log(record)
                bar.set_postfix(D=f"{record['loss_d']:.3f}", G=f"{record['loss_g']:.3f}",
                                Dx=f"{record['d_real']:.2f}", DGz=f"{record['d_fake_after']:.2f}",
                                ips=f"{record['img_per_s']:.0f}")
                sums, window_steps, window_t0 = None, 0, now
            if sample_due:
                self.sample(step)
            improved = eval_due and self.evaluate(step)
            # A stop request may have arrived (and cut short the evaluation) since ckpt_due was set.
            if ckpt_due or improved or stop.signum is not None:
                path = self.checkpoint(step)
                if improved:
                    link_as(path, path.parent / "best.pt")
        bar.close()
        return step

    def healthy(self) -> bool:
        """Whether every step since the last check gave finite stats and G, D (and the EMA G) hold
        finite weights: one host sync."""
        nets = (self.g, self.d, *([self.ema.model] if self.ema is not None else []))
        checks = [torch.isfinite(t).all() for net in nets for t in net.state_dict().values()
                  if t.is_floating_point()]
        return bool(torch.stack([self.finite, *checks]).all())

    def rollback(self, step: int) -> int:
        """Handle a NaN/inf seen at `step` as --on-nan says: stop, or roll back to the last good
        checkpoint and skip the batches since the last finite check or halve the learning rates.
        Returns the step training continues from; raises FaceganError when it must give up."""
        tc = self.cfg.train
        first = self.checked + 1
        when = f"between steps {first} and {step}" if first < step else f"at step {step}"
        good = str(self.last_good) if self.last_good is not None else "none yet (the run's initial state)"
        what = f"a loss or weight became NaN/inf {when}"
        if tc.on_nan == "stop":
            raise FaceganError(f"{what}; stopped without saving it (--on-nan stop); the last good checkpoint "
                               f"is {good}")
        if self.guard.rollbacks >= tc.nan_retries:
            raise FaceganError(f"{what}, after {self.guard.rollbacks} rollback(s); gave up without saving "
                               f"it (--nan-retries {tc.nan_retries}); the last good checkpoint is {good} — "
                               f"lower --lr or change --loss, or resume with --on-nan rollback-lower-lr")
        state = load_checkpoint(self.last_good) if self.last_good is not None else self.initial
        assert state is not None
        good_step = _load_training_state(state, good, self.cfg, self.g, self.d, self.ema, self.opt_g,
                                         self.opt_d, self.scaler, self.step_rng)
        self.best = state.get("best") or None
        self.guard.rollbacks += 1
        if tc.on_nan == "rollback-skip":
            self.guard.skip.append((first, step))
            action = f"will skip the batches of steps {first}-{step}"
        else:
            self.guard.lr_scale /= 2
            action = f"halved the learning rates (now x{self.guard.lr_scale:g} of the configured ones)"
        _set_lr(self.opt_g, self.opt_d, self.cfg, self.guard.lr_scale)
        self.finite.fill_(True)
        self.logger.rewind(good_step)
        self.checked = good_step
        with contextlib.suppress(OSError):
            print(f"\nwarning: {what}; rolled back to step {good_step} and {action} (rollback "
                  f"{self.guard.rollbacks} of at most {tc.nan_retries}, --on-nan {tc.on_nan})",
                  file=sys.stderr)
        return good_step

    def evaluate(self, step: int) -> bool:
        """Measure the user-facing generator; log to metrics.jsonl + TensorBoard. True if a new best.

        The first metric decides "best": lower FID/KID, or C2ST accuracy closer to 0.5. Evaluation
        draws from its own seeded generators, so it never perturbs training (resume stays exact).
        """
        from facegan.metrics import append_metrics, evaluate, inception_extractor, parse_metrics
        from facegan.metrics.evaluate import EvaluationCancelled

        tc = self.cfg.train
        protocols = parse_metrics(tc.eval_metrics.split(","))
        device = self.fixed_z.device
        if self._extractor is None and any(p.kind in ("fid", "kid") for p in protocols):
            self._extractor = inception_extractor(tc.inception_weights, device)
        g = for_inference(self.ema.model if self.ema is not None else self.g, device, self.cfg.perf.amp)
        stop = self.stop
        try:
            # A stop request abandons the evaluation within one batch, so the checkpoint that follows
            # is written at once instead of after a whole FID pass (a scheduler's grace period is short).
            results = evaluate(g, self.ds, [p.name for p in protocols], num_fake=tc.eval_num_fake or None,
                               device=device, feature_extractor=self._extractor,
                               cancel=None if stop is None else lambda: stop.signum is not None)
        except EvaluationCancelled:
            return False
        append_metrics(self.run_dir, step, results, kimg=step * tc.batch_size / 1000)
        for key, value in results.items():
            self.logger.tb.add_scalar(f"Metrics/{key}", value, step)
        first = protocols[0]
        key = {"fid": first.name, "swd": first.name, "kid": f"{first.name}_mean",
               "prdc": f"{first.name}_coverage"}.get(first.kind, f"{first.name}_acc")
        # Lower is better: FID/KID/SWD as they are, C2ST by its distance from chance, coverage negated.
        score = {"c2st": abs(results[key] - 0.5), "prdc": -results[key]}.get(first.kind, results[key])
        if self.best is not None and score >= self.best["score"]:
            return False
        self.best = {"step": step, "metric": key, "value": results[key], "score": score}
        return True

    @torch.no_grad()
    def render(self, z: torch.Tensor) -> torch.Tensor:
        """Images of the generator users get (the EMA one when enabled) on the CPU, in [-1, 1]."""
        if self.ema is not None:
            return self.ema.model(z).float().cpu()  # always in eval mode
        # Eval mode uses BatchNorm running stats, so sampling never changes training state.
        self.g.eval()
        fake = self.g(z).float().cpu()
        self.g.train()
        return fake

    def sample(self, step: int) -> Path:
        fake = self.render(self.fixed_z)
        path = self.run_dir / "samples" / f"step-{step:08d}.png"
        path.parent.mkdir(exist_ok=True)
        nrow = max(1, int(len(fake) ** 0.5))
        save_image(fake, path, nrow=nrow, padding=2, normalize=True, value_range=(-1.0, 1.0))
        self.logger.image("samples/fixed_noise", grid(fake, nrow), step)
        return path

    def checkpoint(self, step: int) -> Path:
        """Save the training state at `step`; it becomes the divergence guard's rollback target."""
        if not self.healthy():  # the loop checks first; this keeps any other caller from saving a NaN
            raise FaceganError(f"refusing to save a checkpoint at step {step}: it holds NaN/inf values")
        path = save_checkpoint(self.run_dir / "checkpoints", self.state(step), step,
                               self.cfg.train.keep_ckpts)
        self.last_good, self.initial = path, None
        return path

    def state(self, step: int) -> dict[str, Any]:
        """Everything a checkpoint holds (live tensors: copy before keeping it)."""
        spe = self.batches.steps_per_epoch
        return {
            "config": self.cfg.to_dict(),
            "step": step,
            "epoch": step // spe,
            "epoch_position": step % spe,
            "images_seen": step * self.cfg.train.batch_size,
            "dataset_hash": self.ds.content_hash,
            "G": self.g.state_dict(),
            "D": self.d.state_dict(),
            **({"G_ema": self.ema.state_dict()} if self.ema is not None else {}),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng": capture_rng(self.step_rng),
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "best": self.best or {},
            "guard": self.guard.state(),
        }

    def finish(self, step: int) -> None:
        """End-of-run artifacts: exported G (the EMA one when enabled), curves, animation, real-vs-fake."""
        g, weights = (self.g, "G") if self.ema is None else (self.ema.model, "G_ema")
        export_generator(g, self.cfg.model, self.run_dir / "generator.safetensors",
                         extra={"step": str(step), "dataset_hash": self.ds.content_hash, "weights": weights})
        plots.rebuild(self.run_dir)
        fake = self.render(self.fixed_z)
        plots.real_vs_fake(real_sample(self.ds, len(fake), self.cfg.train.seed), fake,
                           self.run_dir / "real_vs_fake.png", nrow=max(1, int(len(fake) ** 0.5)))
