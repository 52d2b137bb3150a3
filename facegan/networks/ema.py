"""Exponential moving average of the generator's weights (Karras et al., ProGAN/StyleGAN).

The averaged G is smoother than the raw one, whose weights oscillate with the adversarial game; it is
what the sample grids, the exported generator and `facegan generate` use. The half-life is given in
thousands of images, as in StyleGAN, so it does not depend on the batch size:
β = 0.5 ** (batch / (ema_kimg · 1000)) per step.

Hand-written (a dozen lines) rather than torch.optim.swa_utils.AveragedModel: that one wraps the
module (state-dict keys gain a "module." prefix and an n_averaged counter) and averages buffers
instead of copying them; here the EMA is a plain generator module whose state dict loads like G's.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_beta(half_life_kimg: float, batch_size: int) -> float:
    """Per-step decay whose weight on the past halves every `half_life_kimg` thousand images."""
    return float(0.5 ** (batch_size / (half_life_kimg * 1000)))


class EMA:
    """A frozen copy of G, pulled towards G by `update` after each step; always in eval mode."""

    def __init__(self, g: nn.Module, half_life_kimg: float, batch_size: int) -> None:
        self.beta = ema_beta(half_life_kimg, batch_size)
        self.model = copy.deepcopy(g).requires_grad_(False).eval()

    @torch.no_grad()
    def update(self, g: nn.Module) -> None:
        """ema ← β·ema + (1 - β)·g for parameters; buffers (BatchNorm running stats) copied from g.

        Device-side only (no host sync). Copying the running stats keeps them those of the batches G
        actually sees; they are not averaged, as in StyleGAN.
        """
        torch._foreach_lerp_(list(self.model.parameters()), list(g.parameters()), 1.0 - self.beta)
        for mine, theirs in zip(self.model.buffers(), g.buffers(), strict=True):
            mine.copy_(theirs)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()
