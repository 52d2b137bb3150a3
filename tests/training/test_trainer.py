"""One trainer per rank (facegan.training.trainer): one process takes the ranks' path, the ranks check
that they start alike, one learning-rate schedule holds after a resume and a rollback, the process's
global RNGs are left alone, and the run's length is decided once (the dry run says what training does).
"""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import facegan.training.build
from facegan.config.schema import GANConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from facegan.data.dataset import PackedDataset
from facegan.data.prepare import prepare
from facegan.data.shard import Shard
from facegan.networks.checkpoint import load_checkpoint
from facegan.training.loop import train
from facegan.training.plan import dry_run
from facegan.training.schedule import learning_rates
from facegan.training.step import StepStats
from facegan.training.trainer import Resumed, Trainer
from tests.conftest import make_image_folder
from tests.training.helpers import TINY, finish, start

MODEL = ModelConfig(size=32, latent_dim=16, ngf=8, ndf=8)


def tiny(data: Path, optim: OptimConfig | None = None, **train: Any) -> RunConfig:
    settings: dict[str, Any] = {
        "data": str(data),
        "batch_size": 16,
        "steps": 12,
        "log_every": 2,
        "sample_every": 1000,
        "ckpt_every": 4,
        "device": "cpu",
        "tracker": "none",
        **train,
    }
    return RunConfig(
        model=MODEL, gan=GANConfig(ema_kimg=0.5), optim=optim or OptimConfig(), train=TrainConfig(**settings)
    )


def test_one_process_trains_through_the_ranks_path(
    prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """World size 1 is no special path: the step gets this rank's rows (all of them) and the gradient
    average (nothing to average), exactly as every rank of a torchrun launch does."""
    calls: list[dict[str, Any]] = []
    real = facegan.training.build.train_step

    def spy(*args: Any, **kw: Any) -> StepStats:
        calls.append(kw)
        return real(*args, **kw)

    monkeypatch.setattr(facegan.training.build, "train_step", spy)
    train(tiny(prepared, steps=2), tmp_path / "runs", quiet=True)
    assert len(calls) == 2
    for kw in calls:
        assert kw["shard"] == Shard(0, 16, 16)
        assert kw["sync"] is not None and kw["sync"].__func__.__name__ == "all_reduce_grads"


def test_the_process_global_rngs_are_left_alone(prepared: Path, tmp_path: Path) -> None:
    """A run (and its resume) neither seeds nor draws from torch's, random's or numpy's global state;
    the run's own generators keep it exact: the resumed run ends where a straight one does."""
    random.seed(123)
    np.random.seed(123)
    torch.manual_seed(123)
    before = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    straight = train(tiny(prepared, steps=8), tmp_path / "a", quiet=True)
    half = train(tiny(prepared, steps=4), tmp_path / "b", quiet=True)
    resumed = train(
        None, tmp_path / "b", resume=str(half.run_dir), overrides_on_resume={"steps": 8}, quiet=True
    )  # type: ignore[arg-type]
    after = (random.getstate(), np.random.get_state()[1], torch.get_rng_state())
    assert before[0] == after[0]
    assert np.array_equal(before[1], after[1])
    assert torch.equal(before[2], after[2])
    a = load_checkpoint(straight.run_dir / "checkpoints" / "latest.pt")
    b = load_checkpoint(resumed.run_dir / "checkpoints" / "latest.pt")
    assert b["step"] == 8
    for net in ("G", "D", "G_ema"):
        assert all(torch.equal(a[net][k], b[net][k]) for k in a[net]), net
    assert torch.equal(a["rng"]["step"], b["rng"]["step"])


def test_learning_rate_after_resume_and_rollback_is_the_schedules(
    prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a ramp-down over the whole run, the rates a resumed trainer starts with, and the rates right
    after a divergence rollback (which also halves them), are the schedule's at the restored step."""
    optim = OptimConfig(lr_rampdown=12)
    cfg = tiny(prepared, optim, on_nan="rollback-lower-lr")
    run = train(cfg, tmp_path / "runs", quiet=True)
    ckpt_path = run.run_dir / "checkpoints" / "ckpt-00000008.pt"
    trainer = Trainer(cfg, PackedDataset(prepared), resumed=Resumed(load_checkpoint(ckpt_path), ckpt_path))
    assert trainer.start == 8
    lr_g, lr_d = learning_rates(trainer.cfg.optim, 8, 12)
    assert (lr_g, lr_d) == (2e-4 * (4 / 12), 2e-4 * (4 / 12))
    assert trainer.training.opt_g.param_groups[0]["lr"] == lr_g
    assert trainer.training.opt_d.param_groups[0]["lr"] == lr_d

    # A rollback: poison G's weights after step index 9; the check at step 10 rolls back to step 8.
    seen: list[tuple[int, float, float]] = []
    real_rollback = Trainer.rollback

    def rollback(self: Trainer, step: int, outputs: Any) -> int:
        good = real_rollback(self, step, outputs)
        opt_g, opt_d = self.training.opt_g, self.training.opt_d
        seen.append((good, opt_g.param_groups[0]["lr"], opt_d.param_groups[0]["lr"]))
        return good

    real_step = facegan.training.build.train_step
    fired: list[int] = []

    def poison(g: torch.nn.Module, *args: Any, step: int, **kw: Any) -> StepStats:
        stats = real_step(g, *args, step=step, **kw)
        if step == 9 and not fired:
            fired.append(step)
            with torch.no_grad():
                weight = next(g.parameters())
                weight[(0,) * weight.dim()] = float("nan")
        return stats

    monkeypatch.setattr(Trainer, "rollback", rollback)
    monkeypatch.setattr(facegan.training.build, "train_step", poison)
    train(cfg, tmp_path / "again", quiet=True)
    assert seen == [(8, *learning_rates(cfg.optim, 8, 12, guard_scale=0.5))]


@pytest.fixture
def split_data(tmp_path: Path) -> Path:
    """120 images: the preparation holds 12 out for metrics (10% from 100 images up)."""
    src = make_image_folder(tmp_path / "src", 120, nested=False)
    return prepare(str(src), tmp_path / "prepared", size=32, quiet=True).out


def test_the_dry_run_counts_the_steps_training_takes(split_data: Path, tmp_path: Path) -> None:
    """One function decides the run's length: an epoch is over the images training draws from (108 of
    120 here, 6 batches of 16), for the dry run's plan as for the loop."""
    cfg = tiny(split_data, steps=None, epochs=1, ckpt_every=1000)
    plan = next(line for line in dry_run(cfg, tmp_path / "runs") if line.startswith("steps"))
    result = train(cfg, tmp_path / "runs", quiet=True)
    assert result.step == 6
    assert plan.split()[1] == "6", plan


RANK_SCRIPT = """
import os, sys
import torch
import facegan.networks.architectures, facegan.runtime.perf
from facegan.cli.main import main

rank = int(os.environ["RANK"])
if sys.argv[1] == "config":  # rank 1's CPU "has" native bf16, so --amp auto resolves to bf16 there only
    facegan.runtime.perf.cpu_has_native_bf16 = lambda: rank == 1
else:  # rank 1 initialises one weight differently
    real = facegan.networks.architectures.init_weights

    def init(module):
        real(module)
        if rank == 1 and isinstance(module, torch.nn.ConvTranspose2d) and module.in_channels == 16:
            module.weight.data.add_(1e-3)

    facegan.networks.architectures.init_weights = init  # the dcgan entry's init calls it from there
sys.exit(main(["train", *sys.argv[2:]]))
"""


def test_ranks_that_start_differently_stop_with_one_line(prepared: Path, tmp_path: Path) -> None:
    """Two gloo ranks whose resolved config (or initial weights) differ: both stop before training or
    writing anything, and rank 0 names the difference in one line."""
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    procs = {
        what: start(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc-per-node",
                "2",
                str(script),
                what,
                "--data",
                str(prepared),
                *TINY,
                "--steps",
                "2",
                "--outdir",
                str(tmp_path / what),
            ]
        )
        for what in ("config", "weights")
    }
    expected = {
        "config": "rank 1's resolved config differs from rank 0's at perf.amp (\"bf16\" on rank 1",
        "weights": "rank 1's initial G weights differ from rank 0's (first at main.0.weight)",
    }
    for what, proc in procs.items():
        _, err = finish(proc, code=None)
        assert proc.returncode != 0, err[-3000:]
        lines = [x for x in err.splitlines() if "error:" in x and "facegan" in x]
        assert len(lines) == 1 and expected[what] in lines[0], err[-3000:]
        assert not re.search(r'File ".*facegan/', err), err[-3000:]  # no traceback of facegan's
        assert not (tmp_path / what).exists() or not any((tmp_path / what).iterdir())
