"""The stabilizer losses and penalties (facegan/training/losses.py) equal their formulas."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from facegan.config.schema import GANConfig
from facegan.training.losses import (
    d_loss_bce,
    d_loss_hinge,
    d_loss_lsgan,
    d_loss_wgan,
    g_loss_hinge,
    g_loss_lsgan,
    g_loss_wgan,
    gradient_penalty,
    r1_penalty,
)
from facegan.training.step import d_loss

REAL = torch.tensor([2.0, -1.0, 0.5, 0.0])
FAKE = torch.tensor([-3.0, 0.25, 1.5, -0.5])


# ----------------------------------------------------------------------------- losses


def test_hinge_lsgan_wgan_equal_their_formulas() -> None:
    # hinge: mean(max(0, 1 - r)) + mean(max(0, 1 + f)); G: -mean(f)
    hinge_real = (0 + 2 + 0.5 + 1) / 4
    hinge_fake = (0 + 1.25 + 2.5 + 0.5) / 4
    assert d_loss_hinge(REAL, FAKE).item() == pytest.approx(hinge_real + hinge_fake)
    assert g_loss_hinge(FAKE).item() == pytest.approx(-(-3 + 0.25 + 1.5 - 0.5) / 4)
    # lsgan: ½ mean((r - 1)²) + ½ mean(f²); G: ½ mean((f - 1)²)
    ls_real = 0.5 * (1 + 4 + 0.25 + 1) / 4
    ls_fake = 0.5 * (9 + 0.0625 + 2.25 + 0.25) / 4
    assert d_loss_lsgan(REAL, FAKE).item() == pytest.approx(ls_real + ls_fake)
    assert g_loss_lsgan(FAKE).item() == pytest.approx(0.5 * (16 + 0.5625 + 0.25 + 2.25) / 4)
    # wgan: mean(f) - mean(r); G: -mean(f)
    assert d_loss_wgan(REAL, FAKE).item() == pytest.approx(-1.75 / 4 - 1.5 / 4)
    assert g_loss_wgan(FAKE).item() == pytest.approx(1.75 / 4)


def test_one_sided_label_smoothing_changes_only_the_real_term() -> None:
    smooth = GANConfig(label_smoothing=0.1)
    other_fake = FAKE * -2
    delta = d_loss(smooth, REAL, FAKE) - d_loss(GANConfig(), REAL, FAKE)
    expected = F.binary_cross_entropy_with_logits(
        REAL, torch.full_like(REAL, 0.9)
    ) - F.binary_cross_entropy_with_logits(REAL, torch.ones_like(REAL))
    assert delta.item() == pytest.approx(expected.item(), abs=1e-6)
    # the fake term is untouched: the difference does not depend on the fake logits
    delta_other = d_loss(smooth, REAL, other_fake) - d_loss(GANConfig(), REAL, other_fake)
    assert delta_other.item() == pytest.approx(delta.item(), abs=1e-6)
    assert torch.equal(d_loss(GANConfig(), REAL, FAKE), d_loss_bce(REAL, FAKE))


class Linear(nn.Module):
    """D(x) = <w, x> per sample: its input gradient is w everywhere."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.w).flatten(1).sum(1)


class HalfSquare(nn.Module):
    """D(x) = ½·a·‖x‖² per sample: its input gradient is a·x."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(1.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.a * x.square().flatten(1).sum(1)


def test_gradient_penalty_vanishes_for_a_unit_gradient_critic() -> None:
    gen = torch.Generator().manual_seed(0)
    real, fake = torch.randn(6, 3, 4, 4, generator=gen), torch.randn(6, 3, 4, 4, generator=gen)
    eps = torch.rand(6, 1, 1, 1, generator=gen)
    w = torch.randn(3, 4, 4, generator=gen)
    unit = Linear(w / w.norm())
    assert gradient_penalty(unit, real, fake, eps, weight=10.0).item() == pytest.approx(0.0, abs=1e-10)
    steep = Linear(2 * w / w.norm())  # ‖∇‖ = 2 → (2 - 1)² · 10
    penalty = gradient_penalty(steep, real, fake, eps, weight=10.0)
    assert penalty.item() == pytest.approx(10.0, rel=1e-5)
    penalty.backward()  # and it trains the critic: d/dw pushes ‖w‖ back towards 1
    assert steep.w.grad is not None and (steep.w.grad * steep.w).sum() > 0


def test_r1_is_half_gamma_times_squared_input_gradient() -> None:
    d = HalfSquare()
    x = torch.randn(5, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    r1 = r1_penalty(d, x, gamma=4.0)
    expected = 4.0 / 2 * (1.5 * x).square().flatten(1).sum(1).mean()
    assert r1.item() == pytest.approx(expected.item(), rel=1e-6)
    r1.backward()  # d/da of 2·a²·E‖x‖² = 4·a·E‖x‖²
    assert d.a.grad.item() == pytest.approx((4 * 1.5 * x.square().flatten(1).sum(1).mean()).item(), rel=1e-5)
