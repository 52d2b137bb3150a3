"""The loss registry: a new `--loss` joins in one place and the step uses it; an unknown one is one line."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from facegan.config.gan import GANConfig
from facegan.config.schema import ModelConfig, OptimConfig
from facegan.errors import FaceganError
from facegan.networks.factory import build_models
from facegan.runtime.perf import make_optimizers
from facegan.training.losses import LOSSES, GANLoss, d_loss_bce, g_loss_bce, get_loss, register_loss
from facegan.training.step import d_loss, train_step

CFG = ModelConfig(size=32, latent_dim=16, ngf=8, ndf=8)
CALLS: list[str] = []


def _scaled_d(real: torch.Tensor, fake: torch.Tensor, gan: GANConfig) -> torch.Tensor:
    CALLS.append("d")
    return 3.0 * d_loss_bce(real, fake)


def _g_sees_real(fake: torch.Tensor, real: torch.Tensor | None) -> torch.Tensor:
    CALLS.append("g" if real is not None else "g-without-real")
    return g_loss_bce(fake)


@pytest.fixture
def scaled() -> Iterator[GANLoss]:
    CALLS.clear()
    yield register_loss(
        GANLoss("scaled-bce", "3 × bce, for the test", _scaled_d, _g_sees_real, g_needs_real=True)
    )
    del LOSSES["scaled-bce"]


def test_a_registered_loss_is_what_the_step_trains_with(scaled: GANLoss) -> None:
    real, fake = torch.randn(16), torch.randn(16)
    gan = GANConfig(loss="scaled-bce")
    assert torch.equal(d_loss(gan, real, fake), 3.0 * d_loss_bce(real, fake))
    g, d = build_models(CFG, seed=0)
    opt_g, opt_d = make_optimizers(g, d, OptimConfig())
    stats = train_step(g, d, opt_g, opt_d, torch.rand(4, 3, 32, 32) * 2 - 1, torch.Generator(), gan=gan)
    assert torch.isfinite(stats.loss_d) and torch.isfinite(stats.loss_g)
    # D's loss, then G's with D's scores of the real batch (as a relativistic loss asks for them).
    assert CALLS == ["d", "d", "g"]


def test_the_built_in_losses_are_registered_and_unknown_ones_are_one_line() -> None:
    assert list(LOSSES)[:5] == ["bce", "hinge", "lsgan", "wgan-gp", "rpgan"]
    assert get_loss("wgan-gp").gradient_penalty and get_loss("rpgan").g_needs_real
    with pytest.raises(
        FaceganError, match="unknown --loss 'wgan'; choose one of bce, hinge, lsgan, wgan-gp, rpgan"
    ):
        get_loss("wgan")
    with pytest.raises(ValueError, match="registered twice"):
        register_loss(LOSSES["bce"])
