"""DCGAN generator and discriminator whose depth follows the image size.

At 64×64 these are exactly the seeds' networks:
  G: (ConvT-BN-ReLU)×4 - ConvT - Tanh          z (B, nz, 1, 1) → image (B, 3, 64, 64)
  D: (Conv-LReLU) - (Conv-BN-LReLU)×3 - Conv    image → one logit per image (no Sigmoid: the losses
                                                  use the numerically stable logit forms)
Each doubling of `size` adds one stride-2 block; widths are capped at 8× ngf/ndf so 128/256 stay sane.

GANConfig may change D only: its hidden-layer norm (BatchNorm, per-sample layer norm, or none), spectral
norm on every conv, and a minibatch standard deviation channel before the last conv. ModelConfig's
`g_upsample` "resize" changes G: each stride-2 transposed conv becomes nearest ×2 + 3×3 conv.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from facegan.config.schema import ModelConfig
from facegan.storage.sizes import stage_widths


def _widths(size: int, base: int) -> list[int]:
    """Channel widths from the 4×4 stage up to the last hidden stage, e.g. 64px → [8b, 4b, 2b, b]
    (facegan.storage.sizes estimates parameters from the same widths)."""
    return stage_widths(size, base)


class DCGANGenerator(nn.Module):
    """Maps a latent z ~ N(0, I) of shape (B, latent_dim) or (B, latent_dim, 1, 1) to images in [-1, 1]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        widths = _widths(cfg.size, cfg.ngf)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(cfg.latent_dim, widths[0], 4, 1, 0, bias=False),  # (B, w0, 4, 4)
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(True),
        ]
        for w_in, w_out in itertools.pairwise(widths):  # each block doubles H and W
            layers += [
                *_upsample(cfg.g_upsample, w_in, w_out),
                nn.BatchNorm2d(w_out),
                nn.ReLU(True),
            ]
        layers += [
            *_upsample(cfg.g_upsample, widths[-1], cfg.channels),  # (B, 3, size, size)
            nn.Tanh(),
        ]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() == 2:
            z = z[:, :, None, None]
        images: torch.Tensor = self.main(z)  # (B, C, size, size)
        return images


def _upsample(kind: str, c_in: int, c_out: int) -> list[nn.Module]:
    """Double H and W: the seeds' 4×4 stride-2 transposed conv ("convt"), or nearest ×2 then a 3×3 conv
    ("resize"), whose kernel overlaps evenly everywhere and so leaves no checkerboard pattern (Odena,
    Dumoulin & Olah 2016) — the pattern a real-vs-fake classifier picks up first."""
    if kind == "resize":
        return [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False)]
    return [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False)]


def _norm(kind: str, width: int) -> list[nn.Module]:
    """The norm after a hidden conv of D: "batch" (seed), "layer" or "none"."""
    if kind == "batch":
        return [nn.BatchNorm2d(width)]
    if kind == "layer":
        # Layer norm over (C, H, W) of each sample with a per-channel gain and shift: the form WGAN-GP's
        # reference code uses, and independent of the other samples in the batch.
        return [nn.GroupNorm(1, width)]
    return []


class MinibatchStd(nn.Module):
    """Appends one channel: the standard deviation of each feature across a group of images, averaged
    over features (Karras et al. 2018, ProGAN §3). A generator that gives every z the same face makes it
    ~0, which D can see in one forward, so G is pushed toward the data's variety.

    Groups are strided (image n is in group n mod B/g), as in StyleGAN2; g = gcd(batch, group) so any
    batch (a torchrun rank's share, a short last batch) works. Written here: torch has no such layer."""

    def __init__(self, group: int) -> None:
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) → (B, C + 1, H, W)
        b, c, h, w = x.shape
        g = math.gcd(b, self.group)
        y = x.float().reshape(g, b // g, c, h, w)  # (g, B/g, C, H, W)
        y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (B/g,) one per group
        y = y.to(x.dtype).reshape(-1, 1, 1, 1).repeat(g, 1, h, w)  # (B, 1, H, W): image n → group n mod B/g
        return torch.cat([x, y], dim=1)

    def extra_repr(self) -> str:
        return f"group={self.group}"


class Discriminator(nn.Module):
    """Maps images (B, 3, size, size) to real-vs-fake logits (B,).

    `norm` is the hidden layers' normalisation (batch | layer | none); without a norm those convs get a
    bias, which BatchNorm's shift made redundant in the seed. `mbstd_group` > 0 adds a `MinibatchStd`
    channel before the last conv. Spectral norm is added after init by `add_spectral_norm`.
    """

    def __init__(self, cfg: ModelConfig, norm: str = "batch", mbstd_group: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        widths = _widths(cfg.size, cfg.ndf)[::-1]  # e.g. 64px → [b, 2b, 4b, 8b]
        layers: list[nn.Module] = [
            nn.Conv2d(cfg.channels, widths[0], 4, 2, 1, bias=False),  # (B, ndf, size/2, size/2)
            nn.LeakyReLU(0.2, inplace=True),
        ]
        for w_in, w_out in itertools.pairwise(widths):  # each block halves H and W
            layers += [
                nn.Conv2d(w_in, w_out, 4, 2, 1, bias=norm == "none"),
                *_norm(norm, w_out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        if mbstd_group:
            layers.append(MinibatchStd(mbstd_group))  # (B, 8·ndf + 1, 4, 4)
        layers.append(nn.Conv2d(widths[-1] + bool(mbstd_group), 1, 4, 1, 0, bias=False))  # (B, 1, 1, 1)
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.main(x).flatten()  # (B,)
        return logits


def init_weights(module: nn.Module) -> None:
    """DCGAN init: conv weights ~ N(0, 0.02); BatchNorm weight ~ N(1, 0.02), bias 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def add_spectral_norm(d: nn.Module) -> nn.Module:
    """Parametrize every conv weight of `d` as W / σ(W), in place (Miyato et al. 2018).

    σ is the top singular value of the weight reshaped to (out, in·k·k), tracked by one power iteration
    per training-mode forward.
    """
    for module in d.modules():
        if isinstance(module, nn.Conv2d):
            torch.nn.utils.parametrizations.spectral_norm(module)
    return d
