"""One GAN training step as a pure function of (models, optimizers, batch, rng).

It never reads a value back to the host: the returned statistics are 0-d device tensors, so the loop
decides when to pay for a synchronisation (only at log intervals). With the default GANConfig the step
is the seeds' DCGAN step exactly; each stabilizer (loss, DiffAugment, R1, gradient penalty, label
smoothing) only adds to it, and all its randomness comes from `rng` so a resumed run repeats it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import NamedTuple

import torch
from torch import nn

from facegan.config.gan import GANConfig
from facegan.data.augment import diff_augment
from facegan.data.shard import Shard
from facegan.runtime.perf import GraphOutputs, model_config
from facegan.training.losses import get_loss, gradient_penalty, r1_penalty

SEED_GAN = GANConfig()


class StepStats(NamedTuple):
    """Per-step scalars (detached 0-d tensors), named as in the seeds' training printout.

    The scores are sigmoid(D's output) averaged over the batch: D's probability of "real" for the bce
    loss, and a monotone squash of its raw score for hinge, lsgan and wgan-gp.
    """

    loss_d: torch.Tensor  # Loss_D, the adversarial part: BCE(D(x), 1) + BCE(D(G(z)), 0) for bce
    loss_g: torch.Tensor  # Loss_G, e.g. BCE(D(G(z)), 1) for bce
    d_real: torch.Tensor  # D(x): mean probability D gives the real batch
    d_fake_before: torch.Tensor  # D(G(z)) before the D update's effect on G, i.e. in the D step
    d_fake_after: torch.Tensor  # D(G(z)) in the G step, after D was updated
    reg: torch.Tensor  # penalty added to Loss_D this step (R1 and/or gradient penalty), 0 when none


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
    gan: GANConfig = SEED_GAN,
    step: int = 0,
    amp_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
    shard: Shard | None = None,
    sync: Callable[[torch.optim.Optimizer], None] | None = None,
) -> StepStats:
    """D on a real and a fake batch, then G on the same fakes — the seeds' order, every batch.

    `real` is a normalised batch (B, C, H, W) in [-1, 1] on the models' device; `rng` draws z and every
    other random number (augmentations, interpolation weights). `gan` picks the objective and the
    stabilizers; `step` is the index of this step (lazy R1 runs when step % r1_every == 0).
    `amp_dtype` runs the forward passes under autocast; `scaler` (fp16 only) scales the losses.
    Penalties are computed in fp32 outside autocast.

    Under torchrun, `real` is this rank's `shard` of the global batch: every random number is drawn
    for the whole global batch and the rank keeps its rows, so what is trained does not depend on the
    number of ranks; `sync` averages the gradients over the ranks before each optimizer step.
    """
    # model_config reads g.cfg, which compiled modules forward.
    z = sample_latent(shard.total if shard else real.shape[0], model_config(g).latent_dim, rng)
    if shard is not None:
        z = shard.take(z)
    autocast = torch.autocast(real.device.type, dtype=amp_dtype, enabled=amp_dtype is not None)
    ops = gan.diffaug_ops

    def augment(x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, ops, rng, shard, gan.diffaug_p) if ops else x

    fake, loss_d, reg, real_logits, fake_logits = d_step(
        g, d, opt_d, real, z, rng, augment, gan, step, autocast, scaler, shard, sync
    )
    loss_g, fake_logits_after = g_step(d, opt_g, fake, augment, gan, autocast, scaler, real, sync)
    if scaler is not None:
        scaler.update()

    return StepStats(
        loss_d=loss_d.detach(),
        loss_g=loss_g.detach(),
        d_real=torch.sigmoid(real_logits.detach().float()).mean(),
        d_fake_before=torch.sigmoid(fake_logits.detach().float()).mean(),
        d_fake_after=torch.sigmoid(fake_logits_after.detach().float()).mean(),
        reg=reg.detach(),
    )


def d_step(
    g: nn.Module,
    d: nn.Module,
    opt_d: torch.optim.Optimizer,
    real: torch.Tensor,
    z: torch.Tensor,
    rng: torch.Generator,
    augment: Callable[[torch.Tensor], torch.Tensor],
    gan: GANConfig,
    step: int,
    autocast: AbstractContextManager[object],
    scaler: torch.amp.GradScaler | None,
    shard: Shard | None = None,
    sync: Callable[[torch.optim.Optimizer], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(1) D step: minimise D's loss on augment(x) and augment(G(z)), plus any penalty.

    For bce that is max log D(x) + log(1 - D(G(z))). Real and fake pass through D separately so
    BatchNorm sees pure batches, as in the reference recipe. Returns (G(z) with its graph, Loss_D,
    penalty, real logits, fake logits).
    """
    opt_d.zero_grad(set_to_none=True)
    with autocast:
        real_in = augment(real)
        real_logits = d(real_in)  # (B,)
        fake = g(z)  # (B, C, H, W)
        fake_in = augment(fake.detach())
        fake_logits = d(fake_in)  # (B,)
        loss_d = d_loss(gan, real_logits.float(), fake_logits.float())

    # Penalties need D's input gradient in the graph (double backward), which compiled graphs do not
    # support, so they run the eager module; in fp32, as small gradients' squares underflow in fp16.
    eager_d = d.eager if isinstance(d, GraphOutputs) else getattr(d, "_orig_mod", d)
    reg = torch.zeros((), device=real.device)
    if get_loss(gan.loss).gradient_penalty:
        eps = torch.rand(shard.total if shard else real.shape[0], 1, 1, 1, generator=rng, device=rng.device)
        if shard is not None:
            eps = shard.take(eps)
        reg = reg + gradient_penalty(eager_d, real_in.float(), fake_in.float(), eps, gan.gp_weight)
    if step % gan.r1_every == 0:
        # Lazy regularisation (StyleGAN2): every r1_every steps, scaled by r1_every to keep its weight.
        if gan.r1_gamma > 0:
            reg = reg + gan.r1_every * r1_penalty(eager_d, real_in.float(), gan.r1_gamma)
        if gan.r2_gamma > 0:  # R2: the same penalty on generated images (R3GAN)
            reg = reg + gan.r1_every * r1_penalty(eager_d, fake_in.float(), gan.r2_gamma)
    _backward_and_step(loss_d + reg, opt_d, scaler, sync)  # + 0 leaves the seed's gradients bit for bit
    return fake, loss_d, reg, real_logits, fake_logits


def g_step(
    d: nn.Module,
    opt_g: torch.optim.Optimizer,
    fake: torch.Tensor,
    augment: Callable[[torch.Tensor], torch.Tensor],
    gan: GANConfig,
    autocast: AbstractContextManager[object],
    scaler: torch.amp.GradScaler | None,
    real: torch.Tensor | None = None,
    sync: Callable[[torch.optim.Optimizer], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(2) G step: minimise G's loss on D(augment(G(z))) through the freshly updated D.

    For bce that is max log D(G(z)) (non-saturating). D's weights need no gradient here, so it is
    frozen for the pass: only activations' gradients flow back into G (and, under torchrun, only G's
    gradients are all-reduced). The relativistic rpgan also
    scores the `real` batch with the updated D, as its G loss pairs each fake with a real image.
    Returns (Loss_G, fake logits).
    """
    opt_g.zero_grad(set_to_none=True)
    d.requires_grad_(False)
    with autocast:
        fake_logits_after = d(augment(fake))
        objective = get_loss(gan.loss)
        real_logits = None
        if objective.g_needs_real:
            if real is None:
                raise ValueError(f"the {gan.loss} G step needs the real batch")
            with torch.no_grad():
                real_logits = d(augment(real)).float()
        loss_g = objective.g_loss(fake_logits_after.float(), real_logits)
    _backward_and_step(loss_g, opt_g, scaler, sync)
    d.requires_grad_(True)
    return loss_g, fake_logits_after


def d_loss(gan: GANConfig, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """D's adversarial loss for `gan.loss`, from the loss registry (one-sided label smoothing for bce)."""
    return get_loss(gan.loss).d_loss(real_logits, fake_logits, gan)


def _backward_and_step(
    loss: torch.Tensor,
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    sync: Callable[[torch.optim.Optimizer], None] | None = None,
) -> None:
    # The all-reduce comes before scaler.step, so every rank unscales the same gradients and agrees
    # on skipping an fp16 step with inf/NaN gradients.
    if scaler is None:
        loss.backward()
        if sync is not None:
            sync(opt)
        opt.step()
    else:
        scaler.scale(loss).backward()
        if sync is not None:
            sync(opt)
        scaler.step(opt)
