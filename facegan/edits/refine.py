"""Refining a supervised direction by gradient: push the edit's attribute apart at ±step while holding
the other edits' attributes where they were.

An InterFaceGAN boundary is fitted on the faces the classifier is surest about; for a rare attribute
(Eyeglasses: 4% of generated faces) the top 30% it is fitted on are mostly faces *without* it that
merely look older or male, so its normal points partly at those. Refining starts from that normal and
follows the finding classifier's gradient through the generator:

    maximise   E_z[ min(ℓ_a(G(z + s·d)), CAP) − max(ℓ_a(G(z − s·d)), −CAP) ]
               − λ · ( mean_{z,o}(ℓ_o(G(z + s·d)) − ℓ_o(G(z)))² + mean_{z,o}(ℓ_o(G(z − s·d)) − ℓ_o(G(z)))² )
    over unit d,

with ℓ the finding classifier's logits, a the edit's attribute and o the other edits' attributes
(InterFaceGAN's conditional manipulation, as a penalty rather than a projection). The cap stops faces
that already show the attribute from pulling further. Only the finding classifier sees these faces;
the measuring one (`facegan evaluate-edits`) never does, so a direction that fooled the finder without
changing the face would show up there as a small swing. No library does this; it is a few lines of
autograd. Latents come from their own seed range (REFINE_SEED …), apart from the fitting (0 …),
calibration and evaluation seeds, so a rebuild draws the same faces.
"""

from __future__ import annotations

import torch
from torch import nn

from facegan.runtime.perf import model_config
from facegan.sampling.generate import latents

REFINE_SEED = 2_000_000
STEP = 3.0  # z distance the objective looks at: inside the calibration bound (4), where edits end up
CAP = 6.0  # logit beyond which a face counts as clearly with / without (p ≈ 0.998)
ITERS, BATCH, LR, KEEP = 100, 32, 0.02, 0.1


def refine(
    g: nn.Module,
    net: nn.Module,
    direction: torch.Tensor,
    attr: int,
    others: list[int],
    *,
    iters: int = ITERS,
    batch: int = BATCH,
    keep: float = KEEP,
    step: float = STEP,
    lr: float = LR,
) -> torch.Tensor:
    """The unit direction (latent_dim,) refined from `direction` for attribute `attr` of `net` (images →
    logits, e.g. an AttributeNet), keeping its attributes `others`; `iters` Adam steps of `batch` faces."""
    frozen = [p for p in [*g.parameters(), *net.parameters()] if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    was_training = g.training, net.training
    g.eval()
    net.eval()
    try:
        d = (direction.detach().flatten().double() / direction.norm()).float().requires_grad_(True)
        opt = torch.optim.Adam([d], lr=lr)
        dim = model_config(g).latent_dim
        device = next(g.parameters()).device  # G may sit on a GPU while the classifier stays on the CPU
        net_device = next(net.parameters()).device

        def logits(z: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = net(g(z).float().to(net_device))
            return out

        for i in range(iters):
            first = REFINE_SEED + i * batch
            z = latents(list(range(first, first + batch)), dim).to(device)
            with torch.no_grad():
                base = logits(z)[:, others]
            unit = (d / d.norm()).reshape(1, -1, 1, 1).to(device)
            plus, minus = logits(z + step * unit), logits(z - step * unit)
            apart = plus[:, attr].clamp(max=CAP).mean() - minus[:, attr].clamp(min=-CAP).mean()
            held = ((plus[:, others] - base) ** 2).mean() + ((minus[:, others] - base) ** 2).mean()
            loss = -apart + keep * held if others else -apart
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                d /= d.norm()
        refined: torch.Tensor = d.detach().clone()  # Tensor.norm is unannotated, so d is Any to mypy
        return refined
    finally:
        for p in frozen:
            p.requires_grad_(True)
        g.train(was_training[0])
        net.train(was_training[1])
