"""The training step: the seeds' objective on logits, D then G, as a pure function."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch
from torch import nn

from facegan.config.schema import ModelConfig, OptimConfig
from facegan.networks.factory import build_models
from facegan.runtime.perf import make_optimizers
from facegan.training.losses import d_loss_bce, g_loss_bce
from facegan.training.step import train_step

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/ is not installed: import from the repo
from bench.speed.reference import reference_step  # the PyTorch example's loop body (one copy, shared)

CFG = ModelConfig(size=32, latent_dim=16, ngf=8, ndf=8)


def test_logit_losses_equal_sigmoid_bce() -> None:
    torch.manual_seed(0)
    real, fake = torch.randn(32) * 3, torch.randn(32) * 3
    bce = nn.BCELoss()
    ones, zeros = torch.ones(32), torch.zeros(32)
    ref_d = bce(torch.sigmoid(real), ones) + bce(torch.sigmoid(fake), zeros)
    assert torch.allclose(d_loss_bce(real, fake), ref_d, atol=1e-6)
    assert torch.allclose(g_loss_bce(fake), bce(torch.sigmoid(fake), ones), atol=1e-6)


def test_step_matches_the_seed_recipe() -> None:
    g, d = build_models(CFG, seed=0)
    g2, d2 = copy.deepcopy(g), copy.deepcopy(d)
    opts = make_optimizers(g, d, OptimConfig())
    opts2 = make_optimizers(g2, d2, OptimConfig())
    real = torch.rand(8, 3, 32, 32) * 2 - 1
    for i in range(3):
        rng = torch.Generator().manual_seed(i)
        z = torch.randn(8, 16, 1, 1, generator=torch.Generator().manual_seed(i))
        stats = train_step(g, d, *opts, real, rng)
        # The recipe's D ends in a Sigmoid and is trained with BCELoss on probabilities.
        reference_step(g2, nn.Sequential(d2, nn.Sigmoid()), *opts2, nn.BCELoss(), real, z)
    for a, b in zip(
        [*g.state_dict().values(), *d.state_dict().values()],
        [*g2.state_dict().values(), *d2.state_dict().values()],
    ):
        assert torch.allclose(a.float(), b.float(), atol=1e-5)
    assert all(s.dim() == 0 and torch.isfinite(s) for s in stats)
    assert 0 < stats.d_real.item() < 1


def test_step_updates_both_networks_and_leaves_d_trainable() -> None:
    g, d = build_models(CFG, seed=0)
    g0, d0 = copy.deepcopy(g.state_dict()), copy.deepcopy(d.state_dict())
    opt_g, opt_d = make_optimizers(g, d, OptimConfig())
    train_step(g, d, opt_g, opt_d, torch.rand(8, 3, 32, 32) * 2 - 1, torch.Generator().manual_seed(0))
    assert not torch.equal(g0["main.0.weight"], g.state_dict()["main.0.weight"])
    assert not torch.equal(d0["main.0.weight"], d.state_dict()["main.0.weight"])
    assert all(p.requires_grad for p in d.parameters())


def test_step_is_deterministic_given_rng() -> None:
    def run() -> list[torch.Tensor]:
        g, d = build_models(CFG, seed=0)
        opts = make_optimizers(g, d, OptimConfig())
        rng = torch.Generator().manual_seed(7)
        real = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
        for _ in range(2):
            train_step(g, d, *opts, real, rng)
        return list(g.state_dict().values())

    assert all(torch.equal(a, b) for a, b in zip(run(), run()))
