"""GAN objectives written on discriminator logits (the stable forms of the seeds' Sigmoid + BCELoss)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def d_loss_bce(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """max_D  log D(x) + log(1 - D(G(z)))  ⇔  min  BCE(D(x), 1) + BCE(D(G(z)), 0).

    Summed over the real and fake halves, as the seeds' errD = errD_real + errD_fake.
    """
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def g_loss_bce(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: max_G log D(G(z))  ⇔  min  BCE(D(G(z)), 1)."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
