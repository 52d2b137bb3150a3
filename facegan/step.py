"""One DCGAN training step as a pure function of (models, optimizers, batch, rng).

It never reads a value back to the host: the returned statistics are 0-d device tensors, so the loop
decides when to pay for a synchronisation (only at log intervals).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from facegan.losses import d_loss_bce, g_loss_bce


class StepStats(NamedTuple):
    """Per-step scalars (detached 0-d tensors), named as in the seeds' training printout."""

    loss_d: torch.Tensor  # Loss_D = BCE(D(x), 1) + BCE(D(G(z)), 0)
    loss_g: torch.Tensor  # Loss_G = BCE(D(G(z)), 1)
    d_real: torch.Tensor  # D(x): mean probability D gives the real batch
    d_fake_before: torch.Tensor  # D(G(z)) before the D update's effect on G, i.e. in the D step
    d_fake_after: torch.Tensor  # D(G(z)) in the G step, after D was updated


def sample_latent(batch: int, latent_dim: int, rng: torch.Generator) -> torch.Tensor:
    """z ~ N(0, I) of shape (batch, latent_dim, 1, 1), drawn on the rng's device."""
    return torch.randn(batch, latent_dim, 1, 1, generator=rng, device=rng.device)


def train_step(
    g: nn.Module,
    d: nn.Module,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    real: torch.Tensor,
    rng: torch.Generator,
    *,
    amp_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> StepStats:
    """D on a real and a fake batch, then G on the same fakes — the seeds' order, every batch.

    `real` is a normalised batch (B, C, H, W) in [-1, 1] on the models' device; `rng` draws z.
    `amp_dtype` runs the forward passes under autocast; `scaler` (fp16 only) scales the losses.
    """
    z = sample_latent(real.shape[0], g.cfg.latent_dim, rng)  # compiled modules forward `.cfg`
    autocast = torch.autocast(real.device.type, dtype=amp_dtype, enabled=amp_dtype is not None)

    def backward_and_step(loss: torch.Tensor, opt: torch.optim.Optimizer) -> None:
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)

    # (1) D step: maximise log D(x) + log(1 - D(G(z))). Real and fake pass through D separately so
    # BatchNorm sees pure batches, as in the reference recipe.
    opt_d.zero_grad(set_to_none=True)
    with autocast:
        real_logits = d(real)  # (B,)
        fake = g(z)  # (B, C, H, W)
        fake_logits = d(fake.detach())  # (B,)
        loss_d = d_loss_bce(real_logits.float(), fake_logits.float())
    backward_and_step(loss_d, opt_d)

    # (2) G step: maximise log D(G(z)) through the freshly updated D. D's weights need no gradient
    # here, so it is frozen for the pass: only activations' gradients flow back into G.
    opt_g.zero_grad(set_to_none=True)
    d.requires_grad_(False)
    with autocast:
        fake_logits_after = d(fake)
        loss_g = g_loss_bce(fake_logits_after.float())
    backward_and_step(loss_g, opt_g)
    d.requires_grad_(True)
    if scaler is not None:
        scaler.update()

    return StepStats(
        loss_d=loss_d.detach(),
        loss_g=loss_g.detach(),
        d_real=torch.sigmoid(real_logits.detach().float()).mean(),
        d_fake_before=torch.sigmoid(fake_logits.detach().float()).mean(),
        d_fake_after=torch.sigmoid(fake_logits_after.detach().float()).mean(),
    )
