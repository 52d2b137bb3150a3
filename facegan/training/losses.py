"""GAN objectives written on discriminator logits (the stable forms of the seeds' Sigmoid + BCELoss),
plus the gradient penalties. D's output is a raw score; each docstring gives the objective."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from facegan.config.gan import GANConfig
from facegan.registry import Registry


def d_loss_bce(real_logits: torch.Tensor, fake_logits: torch.Tensor, real_label: float = 1.0) -> torch.Tensor:
    """max_D  log D(x) + log(1 - D(G(z)))  ⇔  min  BCE(D(x), 1) + BCE(D(G(z)), 0).

    Summed over the real and fake halves, as the seeds' errD = errD_real + errD_fake. `real_label`
    below 1 is one-sided label smoothing (Salimans et al. 2016): only the real target moves.
    """
    real = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, real_label))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def g_loss_bce(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: max_G log D(G(z))  ⇔  min  BCE(D(G(z)), 1)."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def d_loss_hinge(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """min_D  E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))]  (Lim & Ye 2017; SN-GAN, BigGAN)."""
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def g_loss_hinge(fake_logits: torch.Tensor) -> torch.Tensor:
    """min_G  -E[D(G(z))]: the generator side of the hinge loss."""
    return -fake_logits.mean()


def d_loss_lsgan(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """min_D  ½E[(D(x) - 1)²] + ½E[D(G(z))²]  (Mao et al. 2017, targets a=0, b=1)."""
    return 0.5 * (real_logits - 1).square().mean() + 0.5 * fake_logits.square().mean()


def g_loss_lsgan(fake_logits: torch.Tensor) -> torch.Tensor:
    """min_G  ½E[(D(G(z)) - 1)²]  (Mao et al. 2017, c=1)."""
    return 0.5 * (fake_logits - 1).square().mean()


def d_loss_wgan(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """min_D  E[D(G(z))] - E[D(x)]: the critic's side of the Wasserstein estimate (without the penalty)."""
    return fake_logits.mean() - real_logits.mean()


def g_loss_wgan(fake_logits: torch.Tensor) -> torch.Tensor:
    """min_G  -E[D(G(z))]."""
    return -fake_logits.mean()


def d_loss_rpgan(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """min_D  E[softplus(D(G(z)) - D(x))]: relativistic pairing (Jolicoeur-Martineau 2019; R3GAN).

    Each real image is paired with one fake; D is asked that the real score above its partner.
    """
    return F.softplus(fake_logits - real_logits).mean()


def g_loss_rpgan(fake_logits: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    """min_G  E[softplus(D(x) - D(G(z)))]: G asks that each fake score above its real partner."""
    return F.softplus(real_logits - fake_logits).mean()


@dataclass(frozen=True)
class GANLoss:
    """One `--loss`: D's and G's objectives on logits, and what the step must add around them.

    `d_loss(real_logits, fake_logits, gan)` may read GANConfig options (bce's label smoothing);
    `g_loss(fake_logits, real_logits)` gets D's scores of the real batch only when `g_needs_real`
    (relativistic losses pair each fake with a real), else None. `gradient_penalty` asks the step for
    WGAN-GP's penalty on interpolates, which needs a per-sample D.
    """

    name: str
    summary: str  # one line for `--help` and the docs
    d_loss: Callable[[torch.Tensor, torch.Tensor, GANConfig], torch.Tensor]
    g_loss: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
    g_needs_real: bool = False
    gradient_penalty: bool = False


# The loss registry: a new objective joins in one place, a `register_loss` call below (as the metric
# and architecture registries do); the step and the config only look names up.
LOSSES: Registry[GANLoss] = Registry("--loss")


def register_loss(loss: GANLoss) -> GANLoss:
    """File `loss` under its name, so `--loss NAME` resolves to it."""
    return LOSSES.add(loss.name, loss)


def get_loss(name: str) -> GANLoss:
    """The registered loss `name`, or one line naming the ones there are."""
    return LOSSES.get_entry(name)


def _unpaired(
    g_loss: Callable[[torch.Tensor], torch.Tensor],
) -> Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]:
    return lambda fake_logits, real_logits: g_loss(fake_logits)


register_loss(
    GANLoss(
        "bce",
        "the seeds' non-saturating GAN loss (optionally one-sided label smoothing)",
        lambda real, fake, gan: d_loss_bce(real, fake, real_label=1.0 - gan.label_smoothing),
        _unpaired(g_loss_bce),
    )
)
register_loss(
    GANLoss(
        "hinge",
        "hinge loss (Lim & Ye 2017)",
        lambda real, fake, gan: d_loss_hinge(real, fake),
        _unpaired(g_loss_hinge),
    )
)
register_loss(
    GANLoss(
        "lsgan",
        "least squares (Mao et al. 2017)",
        lambda real, fake, gan: d_loss_lsgan(real, fake),
        _unpaired(g_loss_lsgan),
    )
)
register_loss(
    GANLoss(
        "wgan-gp",
        "Wasserstein critic with gradient penalty (Gulrajani et al. 2017)",
        lambda real, fake, gan: d_loss_wgan(real, fake),
        _unpaired(g_loss_wgan),
        gradient_penalty=True,
    )
)


def _g_loss_rpgan(fake_logits: torch.Tensor, real_logits: torch.Tensor | None) -> torch.Tensor:
    if real_logits is None:
        raise ValueError("the rpgan G loss needs D's scores of the real batch")
    return g_loss_rpgan(fake_logits, real_logits)


register_loss(
    GANLoss(
        "rpgan",
        "relativistic pairing (Jolicoeur-Martineau 2019; R3GAN)",
        lambda real, fake, gan: d_loss_rpgan(real, fake),
        _g_loss_rpgan,
        g_needs_real=True,
    )
)


def _input_grad(d: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """∇ₓ D(x) per sample, kept in the graph so a penalty on it trains D (double backward)."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(d(x).sum(), x, create_graph=True)  # samples are independent in D
    return grad.flatten(1)


def gradient_penalty(
    d: nn.Module, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor, weight: float = 10.0
) -> torch.Tensor:
    """λ·E[(‖∇D(x̂)‖₂ - 1)²] at x̂ = ε·x + (1 - ε)·G(z), ε ~ U[0, 1] per sample (Gulrajani et al. 2017).

    `eps` has shape (B, 1, 1, 1); D must treat samples independently (no BatchNorm).
    """
    grad = _input_grad(d, eps * real + (1 - eps) * fake)
    penalty: torch.Tensor = weight * (grad.norm(dim=1) - 1).square().mean()
    return penalty


def r1_penalty(d: nn.Module, real: torch.Tensor, gamma: float) -> torch.Tensor:
    """γ/2·E[‖∇ₓD(x)‖²] on real images (Mescheder et al. 2018); on generated ones it is R2."""
    return gamma / 2 * _input_grad(d, real).square().sum(dim=1).mean()
