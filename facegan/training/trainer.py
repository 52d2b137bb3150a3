"""One trainer per rank: `Trainer` owns the training loop on every rank, and one process is rank 0 of 1
through the same code (its collectives have nothing to exchange).

A step is reached in two hops: `Trainer.run` calls `Training.step` (facegan.training.build: this
rank's rows of the step's batch, the gradient average, the EMA update), which calls `train_step`
(facegan.training.step), the pure function of (models, optimizers, batch, rng). Around it the trainer
applies the one learning-rate schedule (facegan.training.schedule), watches for NaN/inf (the divergence
guard: roll back, skip or lower the rates, or stop), agrees with the other ranks on when to stop, and
checkpoints. What only rank 0 does (logging, sample grids, evaluation, the run folder) goes through
`Outputs`, which rank 0 alone holds (facegan.training.loop.RunOutputs).

Before the first step every rank checks that it starts from what rank 0 starts from (config, data,
weights, optimizer state: facegan.training.agreement). All randomness comes from the run's own
generators (facegan.training.rngs): the process's global RNGs are never seeded, drawn from or restored.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm import tqdm

from facegan.config.schema import RunConfig
from facegan.data.dataset import PackedDataset
from facegan.errors import FaceganError
from facegan.networks.checkpoint import link_as, load_checkpoint, save_checkpoint
from facegan.runtime.device import pick_device
from facegan.training.agreement import check_ranks_agree
from facegan.training.build import build_training
from facegan.training.distributed import SINGLE, Dist, RelayedError, adapt
from facegan.training.guard import GuardState
from facegan.training.resume import load_training_state
from facegan.training.rngs import RunRngs
from facegan.training.schedule import apply_learning_rates, learning_rates
from facegan.training.step import StepStats
from facegan.training.stopping import StopFlag, StopVote


@dataclass
class Resumed:
    """A checkpoint a run continues from (read on rank 0, sent to every rank)."""

    ckpt: dict[str, Any]
    path: Path


class Outputs(Protocol):
    """What rank 0 writes while training (facegan.training.loop.RunOutputs)."""

    run_dir: Path

    def log(self, record: dict[str, Any]) -> None: ...

    def sample(self, step: int) -> object: ...

    def evaluate(self, step: int, best: dict[str, Any] | None, stop: StopFlag) -> dict[str, Any] | None: ...

    def rewind(self, step: int) -> None: ...


class Trainer:
    """This rank's part of a training run: built, restored and checked against the other ranks at
    construction; `run` trains to the end (or to an agreed stop) and returns the step it reached."""

    def __init__(
        self,
        cfg: RunConfig,
        ds: PackedDataset,
        dist: Dist = SINGLE,
        resumed: Resumed | None = None,
        quiet: bool = False,
    ) -> None:
        training = build_training(cfg, dist.place(pick_device(cfg.train.device)), ds)
        assert training.batches is not None
        self.cfg, self.ds, self.dist, self.quiet = training.cfg, ds, dist, quiet
        self.total = self.cfg.train.total_steps(training.batches.steps_per_epoch)  # the one conversion
        self.rngs = RunRngs.seeded(training.step_rng, self.cfg.train.seed, dist.rank)
        self.training = training  # all of it (the EMA G too) until every rank has checked it
        self.guard = GuardState()  # what the divergence guard has done (in every checkpoint)
        self.best: dict[str, Any] | None = None  # {"step", "metric", "value", "score"} of the best eval
        # The divergence guard's rollback target: the last checkpoint written or resumed from, or the
        # in-memory `initial` state of a run that has not saved one yet.
        self.last_good: Path | None = None
        self.initial: dict[str, Any] | None = None
        self.start = 0
        if resumed is not None:
            self.guard = GuardState.from_state(resumed.ckpt.get("guard"))
            self.best = resumed.ckpt.get("best") or None
            self.last_good = resumed.path
            self.start = self.restore(resumed.ckpt, str(resumed.path))
            saved = int(resumed.ckpt.get("world_size", 1))
            if saved != dist.world and dist.is_main:
                print(
                    f"resuming a run saved by {saved} process(es) on {dist.world}: the same batches and "
                    f"noise, BatchNorm statistics now per {self.cfg.train.batch_size // dist.world} images",
                    file=sys.stderr,
                )
        else:
            self.apply_schedule(0)
        check_ranks_agree(dist, training, ds.content_hash)
        self.training = adapt(training, dist)  # this rank's rows, gradient average, BatchNorm, EMA
        # A device-side flag every step ANDs its stats' finiteness into, so detecting a NaN costs no
        # host sync until the next check (log, sample, evaluation or checkpoint).
        self.finite = torch.ones((), dtype=torch.bool, device=training.device)
        self.checked = self.start  # the last step at which the flag and the weights were seen finite
        self.vote: StopVote | None = None  # how the ranks agree to stop, while and after `run`

    # ------------------------------------------------------------------ state

    def apply_schedule(self, step: int) -> None:
        """Set both learning rates to the schedule's values for step index `step`."""
        rates = learning_rates(self.cfg.optim, step, self.total, self.guard.lr_scale)
        apply_learning_rates(self.training.opt_g, self.training.opt_d, rates)

    def restore(self, state: dict[str, Any], source: str) -> int:
        """Load a checkpoint's training state into this rank's objects and put the learning rates where
        the schedule has them at its step (the guard's lowering included); returns that step."""
        step = load_training_state(state, source, self.training, self.rngs, self.dist)
        self.apply_schedule(step)
        return step

    def state(self, step: int) -> dict[str, Any]:
        """Everything a checkpoint holds (live tensors: copy before keeping it)."""
        t = self.training
        assert t.batches is not None
        spe = t.batches.steps_per_epoch
        return {
            "config": self.cfg.to_dict(),
            "step": step,
            "epoch": step // spe,
            "epoch_position": step % spe,
            "images_seen": step * self.cfg.train.batch_size,
            "dataset_hash": self.ds.content_hash,
            "G": t.g.state_dict(),
            "D": t.d.state_dict(),
            **({"G_ema": t.ema.state_dict()} if t.ema is not None else {}),
            "opt_g": t.opt_g.state_dict(),
            "opt_d": t.opt_d.state_dict(),
            "rng": self.rngs.capture(),
            "scaler": t.scaler.state_dict() if t.scaler is not None else {},
            "best": self.best or {},
            "guard": self.guard.state(),
        }

    def user_generator(self) -> torch.nn.Module:
        """The generator users get: the EMA one when enabled (rank 0 holds it), else G."""
        return self.training.ema.model if self.training.ema is not None else self.training.g

    # ------------------------------------------------------------------ the loop

    def run(self, stop: StopFlag, outputs: Outputs | None) -> int:
        """Train from `self.start` to `self.total` steps or until the ranks agree to stop; rank 0 passes
        its `outputs`, the others None. Returns the step reached (every checkpoint is written)."""
        tc, t = self.cfg.train, self.training
        assert t.batches is not None
        spe = t.batches.steps_per_epoch
        step, total = self.start, self.total
        vote = self.vote = StopVote(self.dist, stop)
        sums: torch.Tensor | None = None
        window_steps, window_t0 = 0, time.perf_counter()
        bar = tqdm(
            total=total,
            initial=step,
            unit="step",
            disable=self.quiet,
            file=sys.stderr,
            dynamic_ncols=True,
            desc=f"train {t.perf.precision}",
        )
        t.g.train()
        t.d.train()
        if self.last_good is None:
            self.initial = copy.deepcopy(self.state(step))
        while step < total and vote.agreed is None:
            if not self.guard.skips(step):  # skipped: a batch range that made this run diverge before
                self.apply_schedule(step)  # host floats only: no sync; a function of the step alone
                stats = t.step(step)
                # Accumulate on the device; reading back only at log time keeps the step free of syncs.
                vec = torch.stack(list(stats))
                self.finite &= torch.isfinite(vec).all()
                sums = vec if sums is None else sums + vec
                window_steps += 1
            step += 1
            bar.update(1)
            vote.poll()
            log_due = step % tc.log_every == 0 or step == total
            sample_due = step % tc.sample_every == 0 or step == total
            eval_due = tc.eval_every > 0 and (step % tc.eval_every == 0 or step == total)
            ckpt_due = step % tc.ckpt_every == 0 or step == total or vote.agreed is not None
            # Every host sync point first checks the guard, so nothing non-finite is logged as a
            # record, evaluated or saved.
            if log_due or sample_due or eval_due or ckpt_due:
                if not self.dist.all_true(self.healthy()):
                    step = self.rollback(step, outputs)
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
                if outputs is not None:
                    outputs.log(record)
                bar.set_postfix(
                    D=f"{record['loss_d']:.3f}",
                    G=f"{record['loss_g']:.3f}",
                    Dx=f"{record['d_real']:.2f}",
                    DGz=f"{record['d_fake_after']:.2f}",
                    ips=f"{record['img_per_s']:.0f}",
                )
                sums, window_steps, window_t0 = None, 0, now
            if sample_due and outputs is not None:
                outputs.sample(step)
            improved = eval_due and self.dist.share(functools.partial(self._evaluate, step, outputs, stop))
            # A stop request may have arrived (and cut short the evaluation) since ckpt_due was set.
            if ckpt_due or improved or vote.agreed is not None:
                path = self.checkpoint(step, outputs)
                if improved and outputs is not None:
                    link_as(path, path.parent / "best.pt")
        bar.close()
        vote.close()
        return step

    @property
    def stopped_by(self) -> int | None:
        """The signal that stops the run, the same on every rank (one process: its own, when asked)."""
        return self.vote.agreed if self.vote is not None else None

    def _evaluate(self, step: int, outputs: Outputs | None, stop: StopFlag) -> bool:
        """On rank 0: measure the user-facing generator; True when it is the best so far."""
        assert outputs is not None
        best = outputs.evaluate(step, self.best, stop)
        if best is None:
            return False
        self.best = best
        return True

    def healthy(self) -> bool:
        """Whether every step since the last check gave finite stats and G, D (and the EMA G) hold
        finite weights: one host sync."""
        t = self.training
        nets = (t.g, t.d, *([t.ema.model] if t.ema is not None else []))
        checks = [
            torch.isfinite(x).all()
            for net in nets
            for x in net.state_dict().values()
            if x.is_floating_point()
        ]
        return bool(torch.stack([self.finite, *checks]).all())

    def rollback(self, step: int, outputs: Outputs | None) -> int:
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
        self.guard.rollbacks += 1
        if tc.on_nan == "rollback-skip":
            self.guard.skip.append((first, step))
            action = f"will skip the batches of steps {first}-{step}"
        else:
            self.guard.lr_scale /= 2
            action = f"halved the learning rates (now x{self.guard.lr_scale:g} of the configured ones)"
        last_good = self.last_good
        state = self.dist.share(lambda: load_checkpoint(last_good)) if last_good is not None else self.initial
        assert state is not None
        good_step = self.restore(state, good)  # the schedule at good_step, with the guard's new scale
        self.best = state.get("best") or None
        self.finite.fill_(True)
        if outputs is not None:
            outputs.rewind(good_step)
        self.checked = good_step
        with contextlib.suppress(OSError):
            if self.dist.is_main:
                print(
                    f"\nwarning: {what}; rolled back to step {good_step} and {action} (rollback "
                    f"{self.guard.rollbacks} of at most {tc.nan_retries}, --on-nan {tc.on_nan})",
                    file=sys.stderr,
                )
        return good_step

    def checkpoint(self, step: int, outputs: Outputs | None) -> Path:
        """Save the training state at `step` (rank 0 writes; every rank learns the path); it becomes
        the divergence guard's rollback target."""
        if not self.healthy():  # the loop checks first; this keeps any other caller from saving a NaN
            raise FaceganError(f"refusing to save a checkpoint at step {step}: it holds NaN/inf values")
        # Every rank's generators (rank 0's alone when there is one rank: the file's "rng").
        ranks = self.dist.gather(self.rngs.capture())

        def write() -> Path:
            assert outputs is not None and ranks is not None
            state = self.state(step)
            if len(ranks) > 1:
                state.update(rng_ranks=ranks, world_size=len(ranks))
            return save_checkpoint(outputs.run_dir / "checkpoints", state, step, self.cfg.train.keep_ckpts)

        path = self.dist.share(write)
        self.last_good, self.initial = path, None
        return path
