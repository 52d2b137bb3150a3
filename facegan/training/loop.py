"""The training loop: it only orchestrates data, step, logging, samples and checkpoints."""

from __future__ import annotations

import contextlib
import copy
import functools
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

from facegan.config.schema import RunConfig
from facegan.data.dataset import PackedDataset, real_sample, resolve_dataset
from facegan.errors import FaceganError
from facegan.networks.checkpoint import (
    atomic_write,
    capture_rng,
    export_generator,
    link_as,
    load_checkpoint,
    save_checkpoint,
)
from facegan.runtime.device import pick_device
from facegan.runtime.perf import for_inference
from facegan.sampling.generate import grid
from facegan.storage.files import SideWrites
from facegan.tracking import plots
from facegan.tracking.runs import RunLogger, new_run_dir, run_name
from facegan.tracking.trackers import check_available as check_trackers
from facegan.training.build import Training, build_training
from facegan.training.distributed import SINGLE, Dist, RelayedError, StopVote, adapt, check_run
from facegan.training.distributed import train_step as rank_step
from facegan.training.guard import GuardState, rampdown_scale, set_lr
from facegan.training.plan import check_eval_setup
from facegan.training.registered import check_registered
from facegan.training.resume import load_training_state, open_resume
from facegan.training.step import StepStats, sample_latent


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


def train(
    cfg: RunConfig,
    runs_root: Path = Path("runs"),
    resume: str | None = None,
    overrides_on_resume: dict[str, Any] | None = None,
    quiet: bool = False,
    resumable: Collection[str] | None = None,
    dist: Dist = SINGLE,
) -> TrainResult:
    """Train a GAN as `cfg` says (or continue the checkpointed run `resume`); returns where it went.

    With `resumable`, `overrides_on_resume` go through `check_resume_overrides`; without, all apply.
    Under torchrun, `dist` is this process's rank (facegan.distributed): rank 0 reads the checkpoint and
    writes everything, every rank trains its B/N rows of each global batch."""
    quiet = quiet or not dist.is_main
    ckpt: dict[str, Any] | None = None
    ckpt_path = Path()
    if resume:
        # Rank 0 reads the checkpoint (other machines need not see the run folder); all get the result.
        cfg, ckpt, ckpt_path = dist.share(
            lambda: open_resume(resume, runs_root, overrides_on_resume, resumable)
        )
    if dist.world > 1:  # checked once, on rank 0, so a mistake is one line
        dist.share(
            lambda: check_run(
                cfg.train.batch_size, cfg.train.sync_bn, dist.world, pick_device(cfg.train.device)
            )
        )
        if ckpt is not None and dist.is_main and ckpt.get("world_size", 1) != dist.world:
            per = cfg.train.batch_size // dist.world
            print(
                f"resuming a run saved by {ckpt.get('world_size', 1)} process(es) on {dist.world}: the "
                f"same batches and noise, BatchNorm statistics now per {per} images",
                file=sys.stderr,
            )
    device = dist.place(pick_device(cfg.train.device))
    tc = cfg.train

    def check_setup() -> None:  # on rank 0 (under torchrun the only one logging and evaluating) first
        check_registered(cfg)  # an unknown --arch, --loss or --tracker is one line naming the choices
        check_trackers(tc.trackers)  # a missing tracker library is one line, before anything is written
        if tc.eval_every:
            check_eval_setup(tc.eval_metrics, tc.inception_weights)
        if dist.world > 1:  # rank 0 prepares the data once and says what is wrong with it, once
            resolve_dataset(
                tc.data, cfg.model.size, synthetic_count=tc.synthetic_count, seed=tc.seed, quiet=quiet
            )

    dist.share(check_setup)
    ds = resolve_dataset(
        tc.data, cfg.model.size, synthetic_count=tc.synthetic_count, seed=tc.seed, quiet=quiet
    )
    if ckpt is not None and ckpt.get("dataset_hash") not in (None, ds.content_hash):
        raise FaceganError(
            f"the dataset {tc.data!r} differs from the one this checkpoint was trained on "
            f"({ckpt.get('dataset_hash')}); resume with the original data"
        )
    # Seed the global RNGs (build_models uses a private one), so anything drawing from them is
    # reproducible and the RNG states checkpoints carry are the run's, not the process's (a resume
    # restores them below).
    random.seed(tc.seed)
    np.random.seed(tc.seed % 2**32)
    torch.manual_seed(tc.seed)
    training = adapt(build_training(cfg, device, ds), dist, cfg.train.sync_bn)  # this rank's part
    cfg, perf, batches = training.cfg, training.perf, training.batches
    assert batches is not None
    g, d, ema = training.g, training.d, training.ema
    total_steps = tc.steps if tc.steps is not None else tc.epochs * batches.steps_per_epoch
    if not quiet:  # after every input check, so a bad run still answers in one line
        print(f"device {device}: {perf.describe()}", file=sys.stderr)

    # Fixed noise for the sample grids, the same for every run with this seed (the seeds' fixed_noise).
    fixed_z = sample_latent(
        tc.num_samples, cfg.model.latent_dim, torch.Generator().manual_seed(tc.seed + 1)
    ).to(device)

    step = 0
    best: dict[str, Any] | None = None
    if ckpt is not None:
        step = load_training_state(
            ckpt,
            str(ckpt_path),
            cfg,
            g,
            d,
            ema,
            training.opt_g,
            training.opt_d,
            training.scaler,
            training.step_rng,
            dist,
        )
        best = ckpt.get("best") or None
        if not quiet:
            print(f"resuming {ckpt_path} from step {step} (of {total_steps})", file=sys.stderr)

    def open_run_dir() -> Path:  # rank 0 only: the run folder and everything in it are rank 0's
        if ckpt is not None and ckpt_path.parent.name == "checkpoints":
            run_dir = ckpt_path.parent.parent  # continue in the run's own folder
        else:
            run_dir = new_run_dir(runs_root, run_name(cfg))
            _write_run_files(run_dir, cfg, ds, g, d)
        # Atomic: a resume on a full disk must not truncate the run's config. Resumes record any new length.
        atomic_write(run_dir / "config.json", lambda tmp: tmp.write_text(cfg.to_json()))
        return run_dir

    run_dir = dist.share(open_run_dir)
    logger = (
        RunLogger(run_dir, resume_step=step if ckpt is not None else None, cfg=cfg, quiet=quiet)
        if dist.is_main
        else None
    )
    state = _LoopState(cfg, run_dir, training, fixed_z, ds, logger, best, dist)
    if ckpt is not None:  # the rollback target until this run writes a checkpoint of its own
        state.last_good = ckpt_path
        state.guard = GuardState.from_state(ckpt.get("guard"))
    interrupted = False
    with _StopFlag() as stop:
        try:
            if step >= total_steps and not quiet:
                print(
                    f"{run_dir}: already at step {step} of {total_steps}; refreshing its figures and "
                    f"export only (pass a larger --steps or --epochs to train on)"
                )
            step = state.run(step, total_steps, stop, quiet)
            # End-of-run artifacts also after Ctrl-C/SIGTERM: the checkpoint is already safe, and the
            # figures and export then show exactly what it holds.
            if dist.is_main:
                state.finish(step)
        finally:
            if logger is not None:
                logger.close()
        signum = state.stop_signum(stop)  # under torchrun: the stop all ranks agreed on
        if signum is not None:
            interrupted = True
            name = signal.Signals(signum).name
            # After SIGHUP the terminal may be gone (EIO); the checkpoint is safe, so never fail here.
            with contextlib.suppress(OSError):
                if dist.is_main:
                    print(
                        f"\n{name}: stopped at step {step}; checkpoint saved in {run_dir / 'checkpoints'}; "
                        f"continue with: facegan train --resume {run_dir}",
                        file=sys.stderr,
                    )
    return TrainResult(run_dir, step, interrupted, signum)


def _write_run_files(
    run_dir: Path, cfg: RunConfig, ds: PackedDataset, g: torch.nn.Module, d: torch.nn.Module
) -> None:
    import json

    (run_dir / "dataset_manifest.json").write_text(json.dumps(ds.manifest, indent=1))
    n_g = sum(p.numel() for p in g.parameters())
    n_d = sum(p.numel() for p in d.parameters())
    (run_dir / "architecture.txt").write_text(
        f"Generator ({n_g:,} parameters)\n{g}\n\nDiscriminator ({n_d:,} parameters)\n{d}\n"
    )


class _LoopState:
    """Bundles what the loop touches, so `run` reads as the orchestration it is."""

    def __init__(
        self,
        cfg: RunConfig,
        run_dir: Path,
        training: Training,
        fixed_z: torch.Tensor,
        ds: PackedDataset,
        logger: RunLogger | None,
        best: dict[str, Any] | None = None,
        dist: Dist = SINGLE,
    ) -> None:
        assert training.batches is not None
        self.cfg, self.run_dir, self.training = cfg, run_dir, training
        self.g, self.d, self.opt_g, self.opt_d = training.g, training.d, training.opt_g, training.opt_d
        self.step_rng, self.fixed_z = training.step_rng, fixed_z
        self.ds, self.batches, self.logger = ds, training.batches, logger
        self.perf, self.scaler, self.ema = training.perf, training.scaler, training.ema
        self.best = best  # {"step", "metric", "value", "score"} of the best evaluation so far
        self._extractor: Any = None  # the Inception network, loaded once at the first FID/KID eval
        # Divergence guard: the checkpoint a NaN/inf rolls back to (None: the in-memory `initial` state
        # of a run that has not saved one yet), and a device-side flag that every step ANDs its stats'
        # finiteness into, so detecting a NaN costs no host sync until the next log/checkpoint.
        self.guard = GuardState()
        self.last_good: Path | None = None
        self.initial: dict[str, Any] | None = None
        self.finite = torch.ones((), dtype=torch.bool, device=fixed_z.device)
        self.checked = 0  # the last step at which the flag and the weights were seen finite
        self.stop: _StopFlag | None = None  # set by `run`; an evaluation polls it between batches
        # Under torchrun: this process's rank (rank 0 alone holds the logger and the EMA G, and writes),
        # and the vote by which all ranks stop after the same step.
        self.dist, self.vote = dist, StopVote(dist)
        self.side = logger.side if logger is not None else SideWrites()  # one warning per kind of write

    def run(self, step: int, total: int, stop: _StopFlag, quiet: bool) -> int:
        tc = self.cfg.train
        spe = self.batches.steps_per_epoch
        ramp = self.cfg.optim.lr_rampdown
        sums: torch.Tensor | None = None
        window_steps, window_t0 = 0, time.perf_counter()
        bar = tqdm(
            total=total,
            initial=step,
            unit="step",
            disable=quiet,
            file=sys.stderr,
            dynamic_ncols=True,
            desc=f"train {self.perf.precision}",
        )
        self.g.train()
        self.d.train()
        self.checked, self.stop = step, stop
        if self.last_good is None:
            self.initial = copy.deepcopy(self.state(step))
        while step < total and self.stop_signum(stop) is None:
            if not self.guard.skips(step):  # skipped: a batch range that made this run diverge before
                if ramp:  # host floats only: no sync; a pure function of the step, so resume stays exact
                    scale = self.guard.lr_scale * rampdown_scale(step, total, ramp)
                    set_lr(self.opt_g, self.opt_d, self.cfg, scale)
                stats = rank_step(self.training, self.dist, step)  # train_step, then the EMA update
                # Accumulate on the device; reading back only at log time keeps the step free of syncs.
                vec = torch.stack(list(stats))
                self.finite &= torch.isfinite(vec).all()
                sums = vec if sums is None else sums + vec
                window_steps += 1
            step += 1
            bar.update(1)
            self.vote.poll(stop.signum)
            log_due = step % tc.log_every == 0 or step == total
            sample_due = step % tc.sample_every == 0 or step == total
            eval_due = tc.eval_every > 0 and (step % tc.eval_every == 0 or step == total)
            ckpt_due = step % tc.ckpt_every == 0 or step == total or self.stop_signum(stop) is not None
            # Every host sync point first checks the guard, so nothing non-finite is logged as a
            # record, evaluated or saved.
            if log_due or sample_due or eval_due or ckpt_due:
                if not self.dist.all_true(self.healthy()):
                    step = self.rollback(step)
                    sums, window_steps, window_t0 = None, 0, time.perf_counter()
                    bar.n = step
                    bar.refresh()
                    continue
                self.checked = step
            if log_due and sums is not None:
                now = time.perf_counter()
                means = (self.dist.mean(sums) / window_steps).tolist()  # every rank's images
                record = {
                    "step": step,
                    "epoch": (step - 1) // spe,
                    "kimg": step * tc.batch_size / 1000,
                    **dict(zip(StepStats._fields, means)),
                    "img_per_s": window_steps * tc.batch_size / max(now - window_t0, 1e-9),
                    "time": time.time(),
                }
                if self.logger is not None:
                    self.logger.log(record)
                bar.set_postfix(
                    D=f"{record['loss_d']:.3f}",
                    G=f"{record['loss_g']:.3f}",
                    Dx=f"{record['d_real']:.2f}",
                    DGz=f"{record['d_fake_after']:.2f}",
                    ips=f"{record['img_per_s']:.0f}",
                )
                sums, window_steps, window_t0 = None, 0, now
            if sample_due and self.dist.is_main:
                self.sample(step)
            improved = eval_due and self.dist.share(functools.partial(self.evaluate, step))  # rank 0, once
            # A stop request may have arrived (and cut short the evaluation) since ckpt_due was set.
            if ckpt_due or improved or self.stop_signum(stop) is not None:
                path = self.checkpoint(step)
                if improved and self.dist.is_main:
                    link_as(path, path.parent / "best.pt")
        bar.close()
        self.vote.close()
        return step

    def stop_signum(self, stop: _StopFlag) -> int | None:
        """The signal that stops the run: this process's own, or under torchrun the one all ranks agreed
        on (any rank's, seen by all one step later), so every rank leaves the loop after the same step."""
        return stop.signum if self.dist.world == 1 else self.vote.agreed

    def healthy(self) -> bool:
        """Whether every step since the last check gave finite stats and G, D (and the EMA G) hold
        finite weights: one host sync."""
        nets = (self.g, self.d, *([self.ema.model] if self.ema is not None else []))
        checks = [
            torch.isfinite(t).all()
            for net in nets
            for t in net.state_dict().values()
            if t.is_floating_point()
        ]
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
        error = FaceganError if self.dist.is_main else RelayedError  # every rank sees it; rank 0 says it
        if tc.on_nan == "stop":
            raise error(
                f"{what}; stopped without saving it (--on-nan stop); the last good checkpoint is {good}"
            )
        if self.guard.rollbacks >= tc.nan_retries:
            raise error(
                f"{what}, after {self.guard.rollbacks} rollback(s); gave up without saving "
                f"it (--nan-retries {tc.nan_retries}); the last good checkpoint is {good} — "
                f"lower --lr or change --loss, or resume with --on-nan rollback-lower-lr"
            )
        last_good = self.last_good
        state = self.dist.share(lambda: load_checkpoint(last_good)) if last_good is not None else self.initial
        assert state is not None
        good_step = load_training_state(
            state,
            good,
            self.cfg,
            self.g,
            self.d,
            self.ema,
            self.opt_g,
            self.opt_d,
            self.scaler,
            self.step_rng,
            self.dist,
        )
        self.best = state.get("best") or None
        self.guard.rollbacks += 1
        if tc.on_nan == "rollback-skip":
            self.guard.skip.append((first, step))
            action = f"will skip the batches of steps {first}-{step}"
        else:
            self.guard.lr_scale /= 2
            action = f"halved the learning rates (now x{self.guard.lr_scale:g} of the configured ones)"
        set_lr(self.opt_g, self.opt_d, self.cfg, self.guard.lr_scale)
        self.finite.fill_(True)
        if self.logger is not None:
            self.logger.rewind(good_step)
        self.checked = good_step
        with contextlib.suppress(OSError):
            if self.dist.is_main:
                print(
                    f"\nwarning: {what}; rolled back to step {good_step} and {action} (rollback "
                    f"{self.guard.rollbacks} of at most {tc.nan_retries}, --on-nan {tc.on_nan})",
                    file=sys.stderr,
                )
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
            results = evaluate(
                g,
                self.ds,
                [p.name for p in protocols],
                num_fake=tc.eval_num_fake or None,
                device=device,
                feature_extractor=self._extractor,
                cancel=None if stop is None else lambda: stop.signum is not None,
            )
        except EvaluationCancelled:
            return False
        append_metrics(self.run_dir, step, results, kimg=step * tc.batch_size / 1000)
        self.logger.metrics(results, step)
        first = protocols[0]
        key = {
            "fid": first.name,
            "swd": first.name,
            "kid": f"{first.name}_mean",
            "prdc": f"{first.name}_coverage",
        }.get(first.kind, f"{first.name}_acc")
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

    def sample(self, step: int) -> Path | None:
        """The fixed-noise grid at `step`, written whole or not at all (a failure is a warning)."""
        fake = self.render(self.fixed_z)
        path = self.run_dir / "samples" / f"step-{step:08d}.png"
        nrow = max(1, int(len(fake) ** 0.5))
        write = functools.partial(
            save_image, fake, nrow=nrow, padding=2, normalize=True, value_range=(-1.0, 1.0), format="png"
        )
        if self.side.attempt("sample grid", lambda: atomic_write(path, write) or True) is None:
            return None
        self.logger.image("samples/fixed_noise", grid(fake, nrow), step, path)
        return path

    def checkpoint(self, step: int) -> Path:
        """Save the training state at `step`; it becomes the divergence guard's rollback target."""
        if not self.healthy():  # the loop checks first; this keeps any other caller from saving a NaN
            raise FaceganError(f"refusing to save a checkpoint at step {step}: it holds NaN/inf values")
        # Under torchrun: every rank's RNG state, then rank 0 writes, and all ranks learn the path.
        rng_ranks = self.dist.gather(capture_rng(self.step_rng)) if self.dist.world > 1 else None

        def write() -> Path:
            state = self.state(step)
            if rng_ranks is not None:
                state.update(rng_ranks=rng_ranks, world_size=self.dist.world)
            return save_checkpoint(self.run_dir / "checkpoints", state, step, self.cfg.train.keep_ckpts)

        path = self.dist.share(write)
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
        path = export_generator(
            g,
            self.cfg.model,
            self.run_dir / "generator.safetensors",
            extra={"step": str(step), "dataset_hash": self.ds.content_hash, "weights": weights},
        )
        self.logger.artifact(path)
        # The figures are redrawn from stats.jsonl and samples/ by `facegan plot`: a failure is a warning.
        self.side.attempt("figures", lambda: plots.rebuild(self.run_dir))
        fake = self.render(self.fixed_z)
        self.side.attempt(
            "figures",
            lambda: plots.real_vs_fake(
                real_sample(self.ds, len(fake), self.cfg.train.seed),
                fake,
                self.run_dir / "real_vs_fake.png",
                nrow=max(1, int(len(fake) ** 0.5)),
            ),
        )
