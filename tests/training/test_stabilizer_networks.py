"""Spectral norm, D normalisation and minibatch-std (facegan/networks/dcgan.py), and EMA."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from facegan.config.schema import GANConfig
from facegan.errors import FaceganError
from facegan.networks.dcgan import MinibatchStd
from facegan.networks.ema import EMA, ema_beta
from facegan.networks.factory import build_models
from tests.training.helpers import CFG, images

# ----------------------------------------------------------------------------- spectral norm, EMA


def test_spectral_norm_bounds_every_d_conv_and_drops_batchnorm() -> None:
    _, d = build_models(CFG, seed=0, gan=GANConfig(spectral_norm=True))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in d.modules())
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(torch.nn.utils.parametrize.is_parametrized(m, "weight") for m in convs)
    d.train()
    with torch.no_grad():
        for _ in range(5):  # each training forward runs one power iteration
            d(images())
        sigmas = [torch.linalg.matrix_norm(m.weight.flatten(1), ord=2).item() for m in convs]
    assert sigmas == pytest.approx([1.0] * len(convs), abs=0.02)
    raw = [
        torch.linalg.matrix_norm(m.parametrizations.weight.original.flatten(1), ord=2).item() for m in convs
    ]
    assert min(raw) < 0.9 or max(raw) > 1.1  # it really rescaled something


def test_d_norm_choices() -> None:
    def kinds(gan: GANConfig) -> set[str]:
        return {type(m).__name__ for m in build_models(CFG, gan=gan)[1].modules()}

    assert "BatchNorm2d" in kinds(GANConfig())
    wgan = kinds(GANConfig(loss="wgan-gp"))
    assert "GroupNorm" in wgan and "BatchNorm2d" not in wgan
    assert "GroupNorm" in kinds(GANConfig(r1_gamma=1.0))
    assert "BatchNorm2d" in kinds(GANConfig(r1_gamma=1.0, d_norm="batch"))  # explicit choice wins
    assert not {"GroupNorm", "BatchNorm2d"} & kinds(GANConfig(d_norm="none"))
    assert not {"GroupNorm", "BatchNorm2d"} & kinds(GANConfig(loss="wgan-gp", spectral_norm=True))


def test_minibatch_std_is_each_strided_groups_feature_spread() -> None:
    x = torch.randn(8, 5, 4, 4, generator=torch.Generator().manual_seed(0))
    y = MinibatchStd(4)(x)
    assert y.shape == (8, 6, 4, 4) and torch.equal(y[:, :5], x)
    for first in (0, 1):  # B/g = 2 groups, image n in group n mod 2
        members = [first, first + 2, first + 4, first + 6]
        spread = x[members].std(dim=0, unbiased=False).mean()
        assert torch.allclose(y[members, 5], spread.expand(4, 4, 4), atol=1e-6)
    same = MinibatchStd(4)(x[:1].expand(4, -1, -1, -1))  # no variety at all → ~0 (the 1e-8 floor)
    assert same[:, 5].max() < 1e-3
    assert MinibatchStd(4)(x[:6]).shape == (6, 6, 4, 4)  # a batch the group does not divide: gcd groups


def test_mbstd_lets_d_see_the_other_images_of_its_group() -> None:
    _, plain = build_models(CFG, seed=0)
    _, mbstd = build_models(CFG, seed=0, gan=GANConfig(mbstd_group=4))
    assert sum(isinstance(m, MinibatchStd) for m in mbstd.modules()) == 1
    a = images()
    b = a.clone()
    b[1:] = images(1)[1:]  # image 0 unchanged, its group mates replaced
    for d, coupled in ((plain, False), (mbstd, True)):
        d.eval()  # BatchNorm on running stats: only the minibatch layer can couple images
        with torch.no_grad():
            assert torch.equal(d(a)[0], d(b)[0]) != coupled
    with pytest.raises(FaceganError, match="--mbstd-group applies to the dcgan discriminator only"):
        build_models(dataclasses.replace(CFG, arch="r3gan"), gan=GANConfig(mbstd_group=4))


def test_ema_reaches_halfway_after_one_half_life() -> None:
    net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    nn.init.zeros_(net[0].weight)
    ema = EMA(net, half_life_kimg=0.4, batch_size=20)  # 400 images = 20 steps of 20
    assert ema.beta == pytest.approx(0.5 ** (20 / 400)) and ema_beta(0.4, 20) == ema.beta
    with torch.no_grad():
        net[0].weight.fill_(1.0)  # a constant target, starting from 0
        net[1].running_mean.fill_(7.0)
    for _ in range(20):
        ema.update(net)
    assert torch.allclose(ema.model[0].weight, torch.full((3, 4), 0.5), atol=1e-6)
    assert torch.equal(ema.model[1].running_mean, net[1].running_mean)  # buffers are copied
    for _ in range(20):
        ema.update(net)
    assert torch.allclose(ema.model[0].weight, torch.full((3, 4), 0.75), atol=1e-6)
    assert not any(p.requires_grad for p in ema.model.parameters()) and not ema.model.training
