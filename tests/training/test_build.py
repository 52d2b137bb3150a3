"""facegan.training.build: the one way a training run is built, shared by the loop, the benchmark and the
tests."""

from __future__ import annotations

from pathlib import Path

import torch

from facegan.config.schema import GANConfig, ModelConfig, PerfConfig, RunConfig, TrainConfig
from facegan.data.dataset import PackedDataset
from facegan.networks.checkpoint import load_checkpoint
from facegan.training.build import build_training
from facegan.training.loop import train

TINY = ModelConfig(size=32, latent_dim=16, ngf=8, ndf=8)
CPU = torch.device("cpu")


def tiny_config(data: Path, **train: object) -> RunConfig:
    # EMA and flips on, so the test sees whether the step updates the EMA G and the batches flip.
    return RunConfig(
        model=TINY,
        gan=GANConfig(ema_kimg=0.5),
        train=TrainConfig(
            data=str(data),
            batch_size=8,
            steps=3,
            seed=5,
            hflip=True,
            sample_every=1000,
            ckpt_every=1000,
            device="cpu",
            **train,
        ),
    )


def test_training_steps_are_the_loops_steps(prepared: Path, tmp_path: Path) -> None:
    """Three `Training.step`s from `build_training` leave G, D, EMA G and the optimizers exactly as
    three steps of `facegan train` do: what the benchmark times is what the loop runs."""
    cfg = tiny_config(prepared)
    run = train(cfg, runs_root=tmp_path / "runs", quiet=True)
    ckpt = load_checkpoint(run.run_dir / "checkpoints" / "latest.pt")

    training = build_training(cfg, CPU, PackedDataset(prepared))
    for step in range(3):
        training.step(step)
    assert training.ema is not None
    ours = {"G": training.g.state_dict(), "D": training.d.state_dict(), "G_ema": training.ema.state_dict()}
    for name, state in ours.items():
        for key, value in state.items():
            assert torch.equal(value, ckpt[name][key]), (name, key)
    assert training.opt_g.state_dict()["state"][0]["step"] == ckpt["opt_g"]["state"][0]["step"] == 3
    moments = training.opt_d.state_dict()["state"][0]["exp_avg"]
    assert torch.equal(moments, ckpt["opt_d"]["state"][0]["exp_avg"])
    # The config the run recorded is the one build_training resolved (no "auto" left).
    assert ckpt["config"]["perf"] == training.cfg.to_dict()["perf"]
    assert "auto" not in training.cfg.to_dict()["perf"].values()


def test_speed_settings_reach_models_and_batches(prepared: Path) -> None:
    cfg = tiny_config(prepared).replace(perf=PerfConfig(amp="off", channels_last="on", fused_adam="on"))
    training = build_training(cfg, CPU, PackedDataset(prepared))
    assert training.perf.channels_last and training.perf.fused_adam
    weight = training.d.state_dict()["main.0.weight"]
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert training.batches is not None
    assert training.batches.batch(0).is_contiguous(memory_format=torch.channels_last)
    assert training.opt_g.defaults["fused"] and training.opt_d.defaults["fused"]


def test_build_and_step_leave_the_global_rngs_alone(prepared: Path) -> None:
    """The dry run promises not to touch the process's RNGs (nor does a run:
    tests/training/test_trainer.py)."""
    real = torch.rand(8, 3, 32, 32) * 2 - 1
    before = torch.random.get_rng_state()
    training = build_training(tiny_config(prepared), CPU)  # no dataset: the caller supplies batches
    assert training.batches is None
    training.step(0, real)
    assert torch.equal(torch.random.get_rng_state(), before)
