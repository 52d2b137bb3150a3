"""`facegan train` on one rank: set the run up, hand the loop to its `Trainer`, write what rank 0 writes.

`train` checks the inputs (each mistake one line), opens the dataset and any checkpoint, builds this
rank's `Trainer` (facegan.training.trainer, which owns the loop on every rank), opens the run folder,
and runs it. `RunOutputs` is what rank 0 alone writes while training and at the end: stats, sample
grids, evaluations, the exported generator and the figures.
"""

from __future__ import annotations

import contextlib
import functools
import json
import signal
import sys
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torchvision.utils import save_image

from facegan.config.schema import RunConfig
from facegan.data.dataset import PackedDataset, real_sample, resolve_dataset
from facegan.errors import FaceganError
from facegan.networks.checkpoint import export_generator
from facegan.runtime.device import pick_device
from facegan.runtime.perf import for_inference
from facegan.sampling.generate import grid
from facegan.sampling.provenance import HASH_KEY, HELDOUT_KEY, training_record
from facegan.storage.files import atomic_write
from facegan.tracking import plots
from facegan.tracking.runs import RunLogger, new_run_dir, run_name
from facegan.tracking.trackers import check_available as check_trackers
from facegan.training.build import Training
from facegan.training.distributed import SINGLE, Dist, check_run
from facegan.training.plan import check_eval_setup
from facegan.training.registered import check_registered
from facegan.training.resume import open_resume
from facegan.training.step import sample_latent
from facegan.training.stopping import StopFlag
from facegan.training.trainer import Resumed, Trainer


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    interrupted: bool
    signum: int | None = None  # the signal that stopped the run early (exit status 128 + signum)


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
    Under torchrun, `dist` is this process's rank (facegan.training.distributed): rank 0 reads the
    checkpoint and writes everything, every rank trains its B/N rows of each global batch; one process
    is rank 0 of 1.
    """
    quiet = quiet or not dist.is_main
    resumed: Resumed | None = None
    if resume:
        # Rank 0 reads the checkpoint (other machines need not see the run folder); all get the result.
        cfg, ckpt, ckpt_path = dist.share(
            lambda: open_resume(resume, runs_root, overrides_on_resume, resumable)
        )
        resumed = Resumed(ckpt, ckpt_path)
    tc = cfg.train

    def check_setup() -> None:  # on rank 0 (the only one logging and evaluating), so a mistake is one line
        check_registered(cfg)  # an unknown --arch, --loss or --tracker is one line naming the choices
        check_run(tc.batch_size, tc.sync_bn, dist.world, pick_device(tc.device))
        check_trackers(tc.trackers)  # a missing tracker library is one line, before anything is written
        if tc.eval_every:
            check_eval_setup(tc.eval_metrics, tc.inception_weights)

    dist.share(check_setup)
    # Rank 0 prepares the data once and says what is wrong with it, once; then every rank opens it.
    ds = dist.main_first(
        lambda: resolve_dataset(
            tc.data, cfg.model.size, synthetic_count=tc.synthetic_count, seed=tc.seed, quiet=quiet
        )
    )
    if resumed is not None and resumed.ckpt.get("dataset_hash") not in (None, ds.content_hash):
        raise FaceganError(
            f"the dataset {tc.data!r} differs from the one this checkpoint was trained on "
            f"({resumed.ckpt.get('dataset_hash')}); resume with the original data"
        )
    trainer = Trainer(cfg, ds, dist, resumed, quiet)
    cfg, step, total = trainer.cfg, trainer.start, trainer.total
    if not quiet:  # after every input check, so a bad run still answers in one line
        print(f"device {trainer.training.device}: {trainer.training.perf.describe()}", file=sys.stderr)
        if resumed is not None:
            print(f"resuming {resumed.path} from step {step} (of {total})", file=sys.stderr)

    def open_run_dir() -> Path:  # rank 0 only: the run folder and everything in it are rank 0's
        if resumed is not None and resumed.path.parent.name == "checkpoints":
            run_dir = resumed.path.parent.parent  # continue in the run's own folder
        else:
            run_dir = new_run_dir(runs_root, run_name(cfg))
            _write_run_files(run_dir, ds, trainer.training)
        # Atomic: a resume on a full disk must not truncate the run's config. Resumes record any new length.
        atomic_write(run_dir / "config.json", lambda tmp: tmp.write_text(cfg.to_json()))
        return run_dir

    run_dir = dist.share(open_run_dir)
    outputs = None
    if dist.is_main:
        logger = RunLogger(run_dir, resume_step=step if resumed is not None else None, cfg=cfg, quiet=quiet)
        outputs = RunOutputs(cfg, run_dir, ds, logger, trainer.training)
    with StopFlag() as stop:
        try:
            if step >= total and not quiet:
                print(
                    f"{run_dir}: already at step {step} of {total}; refreshing its figures and "
                    f"export only (pass a larger --steps or --epochs to train on)"
                )
            step = trainer.run(stop, outputs)
            # End-of-run artifacts also after Ctrl-C/SIGTERM: the checkpoint is already safe, and the
            # figures and export then show exactly what it holds.
            if outputs is not None:
                outputs.finish(step)
        finally:
            if outputs is not None:
                outputs.logger.close()
        signum = trainer.stopped_by  # under torchrun: the stop all ranks agreed on
        if signum is not None:
            name = signal.Signals(signum).name
            # After SIGHUP the terminal may be gone (EIO); the checkpoint is safe, so never fail here.
            with contextlib.suppress(OSError):
                if dist.is_main:
                    print(
                        f"\n{name}: stopped at step {step}; checkpoint saved in {run_dir / 'checkpoints'}; "
                        f"continue with: facegan train --resume {run_dir}",
                        file=sys.stderr,
                    )
    return TrainResult(run_dir, step, signum is not None, signum)


def _write_run_files(run_dir: Path, ds: PackedDataset, training: Training) -> None:
    (run_dir / "dataset_manifest.json").write_text(json.dumps(ds.manifest, indent=1))
    g, d = training.g, training.d
    n_g = sum(p.numel() for p in g.parameters())
    n_d = sum(p.numel() for p in d.parameters())
    (run_dir / "architecture.txt").write_text(
        f"Generator ({n_g:,} parameters)\n{g}\n\nDiscriminator ({n_d:,} parameters)\n{d}\n"
    )


class RunOutputs:
    """What rank 0 writes while a run trains and when it ends (facegan.training.trainer.Outputs)."""

    def __init__(
        self, cfg: RunConfig, run_dir: Path, ds: PackedDataset, logger: RunLogger, training: Training
    ) -> None:
        self.cfg, self.run_dir, self.ds, self.logger, self.training = cfg, run_dir, ds, logger, training
        tc = cfg.train
        # Fixed noise for the sample grids, the same for every run with this seed (the seeds' fixed_noise).
        self.fixed_z = sample_latent(
            tc.num_samples, cfg.model.latent_dim, torch.Generator().manual_seed(tc.seed + 1)
        ).to(training.device)
        self._extractor: Any = None  # the Inception network, loaded once at the first FID/KID eval
        self.side = logger.side  # one warning per kind of failed side write

    def log(self, record: dict[str, Any]) -> None:
        self.logger.log(record)

    def rewind(self, step: int) -> None:
        """Forget the records after `step` (a rollback continues from there)."""
        self.logger.rewind(step)

    def evaluate(self, step: int, best: dict[str, Any] | None, stop: StopFlag) -> dict[str, Any] | None:
        """Measure the user-facing generator; log to metrics.jsonl + TensorBoard. Returns the new best
        ({"step", "metric", "value", "score"}) when this evaluation beats `best`, else None.

        The first metric decides "best": lower FID/KID, or C2ST accuracy closer to 0.5. Evaluation
        draws from its own seeded generators, so it never perturbs training (resume stays exact).
        """
        from facegan.metrics import append_metrics, evaluate, inception_extractor, parse_metrics
        from facegan.metrics.evaluate import EvaluationCancelled

        tc = self.cfg.train
        protocols = parse_metrics(tc.eval_metrics.split(","))
        device = self.training.device
        if self._extractor is None and any(p.kind in ("fid", "kid") for p in protocols):
            self._extractor = inception_extractor(tc.inception_weights, device)
        g = for_inference(self._users_g(), device, self.cfg.perf.amp)
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
                cancel=lambda: stop.signum is not None,
            )
        except EvaluationCancelled:
            return None
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
        if best is not None and score >= best["score"]:
            return None
        return {"step": step, "metric": key, "value": results[key], "score": score}

    def _users_g(self) -> torch.nn.Module:
        t = self.training
        return t.ema.model if t.ema is not None else t.g

    @torch.no_grad()
    def render(self, z: torch.Tensor) -> torch.Tensor:
        """Images of the generator users get (the EMA one when enabled) on the CPU, in [-1, 1]."""
        t = self.training
        if t.ema is not None:
            smooth: torch.Tensor = t.ema.model(z).float().cpu()  # always in eval mode
            return smooth
        # Eval mode uses BatchNorm running stats, so sampling never changes training state.
        t.g.eval()
        fake: torch.Tensor = t.g(z).float().cpu()
        t.g.train()
        return fake

    def sample(self, step: int) -> Path | None:
        """The fixed-noise grid at `step`, written whole or not at all (a failure is a warning)."""
        fake = self.render(self.fixed_z)
        path = self.run_dir / "samples" / f"step-{step:08d}.png"
        nrow = max(1, int(len(fake) ** 0.5))
        write = functools.partial(
            save_image, fake, nrow=nrow, padding=2, normalize=True, value_range=(-1.0, 1.0), format="png"
        )
        if self.side.attempt("sample grid", lambda: _written(path, write)) is None:
            return None
        self.logger.image("samples/fixed_noise", grid(fake, nrow), step, path)
        return path

    def finish(self, step: int) -> None:
        """End-of-run artifacts: exported G (the EMA one when enabled), curves, animation, real-vs-fake."""
        t = self.training
        g, weights = (t.g, "G") if t.ema is None else (t.ema.model, "G_ema")
        path = export_generator(
            g,
            self.cfg.model,
            self.run_dir / "generator.safetensors",
            extra={
                "step": str(step),
                # The data hash and held-out flag, written as load_generator reads them, let `facegan
                # evaluate` say whether the held-out faces were unseen.
                **training_record(
                    {HASH_KEY: self.ds.content_hash, HELDOUT_KEY: self.cfg.train.train_on_heldout}
                ),
                "weights": weights,
            },
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


def _written(path: Path, write: Callable[[Path], object]) -> bool:
    """atomic_write, then True: SideEffects.attempt reads None as "failed"."""
    atomic_write(path, write)
    return True
