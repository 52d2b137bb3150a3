"""A residual G and D without normalisation, in the style of R3GAN (Huang et al. 2024, "The GAN is dead;
long live the GAN! A Modern GAN Baseline") — a small sketch of its ideas, not a reproduction.

What differs from the paper's networks and schedule (so results here say nothing about R3GAN's):
far smaller (at the shipped 64 px, ngf = ndf = 32: 0.95 M / 0.54 M parameters for G / D; ngf 64:
2.7 M / 1.9 M; the paper's are about 22 M each), widths that halve at every stage (the DCGAN's), one
block per stage, R1/R2 applied lazily every 16 steps, constant γ, learning rate, β2 and EMA (the
paper schedules them), DiffAugment (`--diffaug`) where the paper uses ADA's augmentation, average-pool
down-sampling in D, and leaky ReLUs after G's basis and D's input and basis layers.

Both networks are stacks of stages, one per resolution from 4×4 to the image size (so depth follows
`--size` as in the DCGAN). A stage is one or more residual blocks

    x + Conv1×1(act(GroupedConv3×3(act(Conv1×1(x)))))        inverted bottleneck, expansion 2

with no BatchNorm (each sample is computed on its own, which R1/R2 gradient penalties need) and a
fix-up initialisation: the last conv of every branch starts at zero and the others are scaled down
with the number of blocks, so the untrained networks are shallow and well-conditioned. Resolution
changes between stages by a 1×1 conv plus bilinear up-sampling (G) or average-pool down-sampling (D).
G starts from a learned linear map of z to a 4×4 basis and ends in a 1×1 conv to RGB with no squashing
(its output is clamped to [-1, 1] only for display); D ends in a depthwise 4×4 conv and a linear logit.

The objective that goes with it — the relativistic pairing loss with R1 on real and R2 on fake images —
lives in `facegan.training.losses` (`--loss rpgan`, `--r1-gamma`, `--r2-gamma`); the `r3gan` preset
sets it all.
Widths: stage r of an S-pixel model has min(8, S / 2r)·ngf channels (ngf/2 at full resolution), the
DCGAN's widths, so `--ngf` costs the same kind of budget in both architectures.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from facegan.config.schema import ModelConfig

EXPANSION = 2  # channels inside a block = EXPANSION × stage width (R3GAN's inverted bottleneck)
GROUP_WIDTH = 16  # channels per group of the 3×3 conv (R3GAN's "cardinality" via group width)
LRELU_SLOPE = 0.2


def stage_widths(size: int, base: int) -> list[int]:
    """Channels at each resolution 4, 8, …, size, e.g. 64 px, base 32 → [256, 128, 64, 32, 16]."""
    n = int(math.log2(size)) - 1  # stages 4 … size
    widths = [base * min(2 ** (n - 2 - i), 8) for i in range(n - 1)]  # 4 … size/2, as in the DCGAN
    return [*widths, max(base // 2, GROUP_WIDTH // EXPANSION)]


class ResidualBlock(nn.Module):
    """x + Conv1×1 ∘ act ∘ GroupedConv3×3 ∘ act ∘ Conv1×1 (x); no normalisation."""

    def __init__(self, width: int) -> None:
        super().__init__()
        inner = width * EXPANSION
        self.expand = nn.Conv2d(width, inner, 1)
        self.spatial = nn.Conv2d(inner, inner, 3, padding=1, groups=max(1, inner // GROUP_WIDTH))
        self.project = nn.Conv2d(inner, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.expand(x), LRELU_SLOPE)
        h = F.leaky_relu(self.spatial(h), LRELU_SLOPE)
        out: torch.Tensor = x + self.project(h)
        return out


def _stage(width: int, blocks: int) -> nn.Sequential:
    return nn.Sequential(*(ResidualBlock(width) for _ in range(blocks)))


class ResGenerator(nn.Module):
    """z (B, latent_dim[, 1, 1]) → images (B, C, size, size), roughly in [-1, 1]."""

    def __init__(self, cfg: ModelConfig, blocks: int = 1) -> None:
        super().__init__()
        self.cfg = cfg
        widths = stage_widths(cfg.size, cfg.ngf)
        self.basis = nn.Linear(cfg.latent_dim, widths[0] * 4 * 4)  # z → (B, w0, 4, 4)
        self.stages = nn.ModuleList([_stage(widths[0], blocks)])
        self.transitions = nn.ModuleList()
        for w_in, w_out in itertools.pairwise(widths):  # each doubles H and W
            self.transitions.append(nn.Conv2d(w_in, w_out, 1))
            self.stages.append(_stage(w_out, blocks))
        self.to_rgb = nn.Conv2d(widths[-1], cfg.channels, 1)  # (B, C, size, size)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.basis(z.flatten(1)).view(z.shape[0], -1, 4, 4)  # (B, w0, 4, 4)
        x = self.stages[0](F.leaky_relu(x, LRELU_SLOPE))
        for transition, stage in zip(self.transitions, self.stages[1:], strict=True):
            x = F.interpolate(transition(x), scale_factor=2, mode="bilinear", align_corners=False)
            x = stage(x)  # (B, w, 2h, 2w)
        images: torch.Tensor = self.to_rgb(x)  # (B, C, size, size)
        return images


class ResDiscriminator(nn.Module):
    """Images (B, C, size, size) → real-vs-fake logits (B,); every sample is computed on its own."""

    def __init__(self, cfg: ModelConfig, blocks: int = 1) -> None:
        super().__init__()
        self.cfg = cfg
        widths = stage_widths(cfg.size, cfg.ndf)[::-1]  # size … 4
        self.from_rgb = nn.Conv2d(cfg.channels, widths[0], 1)  # (B, w, size, size)
        self.stages = nn.ModuleList()
        self.transitions = nn.ModuleList()
        for w_in, w_out in itertools.pairwise(widths):  # each halves H and W
            self.stages.append(_stage(w_in, blocks))
            self.transitions.append(nn.Conv2d(w_in, w_out, 1))
        self.stages.append(_stage(widths[-1], blocks))
        self.basis = nn.Conv2d(widths[-1], widths[-1], 4, groups=widths[-1])  # (B, w, 1, 1), depthwise
        self.logit = nn.Linear(widths[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.from_rgb(x), LRELU_SLOPE)
        for stage, transition in zip(self.stages, self.transitions):
            x = transition(F.avg_pool2d(stage(x), 2))  # (B, w', h/2, w/2)
        x = self.stages[-1](x)  # (B, w, 4, 4)
        x = F.leaky_relu(self.basis(x), LRELU_SLOPE).flatten(1)  # (B, w)
        logits: torch.Tensor = self.logit(x).flatten()  # (B,)
        return logits


def init_residual(module: nn.Module) -> None:
    """Fix-up init (R3GAN): He-normal everywhere, each branch's first two convs scaled by L^(-1/4)
    for L blocks in the network, its last conv zero, all biases zero."""
    blocks = [m for m in module.modules() if isinstance(m, ResidualBlock)]
    # Layers that feed an activation get its He gain; the linear ones (transitions, to_rgb, the logit)
    # gain 1, so the variance neither grows nor shrinks along the chain of stages.
    linear_layers = {
        id(m)
        for name, m in module.named_modules()
        if name.split(".")[0] in ("transitions", "to_rgb", "logit")
    }
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            gain = 1.0 if id(m) in linear_layers else nn.init.calculate_gain("leaky_relu", LRELU_SLOPE)
            nn.init.normal_(m.weight, 0.0, gain / math.sqrt(m.weight[0].numel()))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    scale = max(len(blocks), 1) ** -0.25
    with torch.no_grad():
        for block in blocks:
            block.expand.weight.mul_(scale)
            block.spatial.weight.mul_(scale)
            block.project.weight.zero_()
