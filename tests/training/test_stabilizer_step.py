"""The training step (facegan/training/step.py) with each stabilizer: finite, fp32, lazy R1."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from facegan.config.files import preset_config
from facegan.config.schema import GANConfig, OptimConfig
from facegan.networks.factory import build_models
from facegan.runtime.perf import make_optimizers
from facegan.training.step import train_step
from tests.training.helpers import CFG, images

# ----------------------------------------------------------------------------- the step


STEP_CONFIGS = {
    "hinge": GANConfig(loss="hinge"),
    "lsgan": GANConfig(loss="lsgan"),
    "wgan-gp": GANConfig(loss="wgan-gp"),
    "bce+smoothing+r1": GANConfig(label_smoothing=0.1, r1_gamma=1.0, r1_every=1),
    "dcgan-plus": preset_config("dcgan-plus").gan,
    "sngan-da": preset_config("sngan-da").gan,
    "dcgan-plus+mbstd": dataclasses.replace(preset_config("dcgan-plus").gan, mbstd_group=4),
}


@pytest.mark.parametrize("name", list(STEP_CONFIGS))
def test_each_stabilizer_trains_with_finite_stats(name: str) -> None:
    gan = STEP_CONFIGS[name]
    g, d = build_models(CFG, seed=0, gan=gan)
    opts = make_optimizers(g, d, OptimConfig())
    rng = torch.Generator().manual_seed(0)
    w0 = [p.detach().clone() for p in [*g.parameters(), *d.parameters()]]
    for step in range(3):
        stats = train_step(g, d, *opts, images(step), rng, gan=gan, step=step)
        assert all(s.dim() == 0 and torch.isfinite(s) for s in stats), stats
    assert all(not torch.equal(a, b) for a, b in zip(w0, [*g.parameters(), *d.parameters()]))
    assert all(p.requires_grad for p in d.parameters())
    assert (stats.reg > 0) == (gan.loss == "wgan-gp" or gan.r1_gamma > 0)


def test_penalties_run_in_fp32_under_autocast() -> None:
    gan = GANConfig(loss="wgan-gp", r1_gamma=1.0, r1_every=1)
    g, d = build_models(CFG, seed=0, gan=gan)
    opts = make_optimizers(g, d, OptimConfig())
    rng = torch.Generator().manual_seed(0)
    stats = train_step(g, d, *opts, images(), rng, gan=gan, amp_dtype=torch.bfloat16)
    assert stats.reg.dtype == torch.float32 and torch.isfinite(torch.stack(list(stats))).all()


def test_lazy_r1_runs_every_n_steps() -> None:
    gan = GANConfig(r1_gamma=1.0, r1_every=3)
    g, d = build_models(CFG, seed=0, gan=gan)
    opts = make_optimizers(g, d, OptimConfig())
    rng = torch.Generator().manual_seed(0)
    regs = [train_step(g, d, *opts, images(), rng, gan=gan, step=s).reg.item() for s in range(4)]
    assert regs[0] > 0 and regs[3] > 0 and regs[1] == regs[2] == 0


def test_diffaug_step_is_deterministic_given_rng() -> None:
    gan = GANConfig(diffaug="color,translation,cutout")

    def run(seed: int) -> list[torch.Tensor]:
        g, d = build_models(CFG, seed=0, gan=gan)
        opts = make_optimizers(g, d, OptimConfig())
        rng = torch.Generator().manual_seed(seed)
        for _ in range(2):
            train_step(g, d, *opts, images(), rng, gan=gan)
        return list(g.state_dict().values())

    assert all(torch.equal(a, b) for a, b in zip(run(7), run(7)))
    assert not all(torch.equal(a, b) for a, b in zip(run(7), run(8)))
