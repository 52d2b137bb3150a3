"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training").

The same kind of random, differentiable transform is applied to every image D sees, real or fake, in
both the D and the G step, so D cannot tell the two apart by augmentation artifacts and the gradients
reach G through the transform. Images are in [-1, 1]; the ops and their strengths are the paper's:

  color        brightness + U(-0.5, 0.5), saturation × U(0, 2), contrast × U(0.5, 1.5), per image
  translation  shift by up to 1/8 of the side in each axis, the uncovered border filled with 0 (grey)
  cutout       zero one square of half the side, centred uniformly at random

Written here rather than imported because nothing well kept does it with an explicit generator: every
random draw below comes from the step's `torch.Generator`, which the checkpoint stores, so a resumed run
repeats the exact augmentations. Under torchrun each rank draws the parameters of the whole global batch
and keeps its `shard` of them, so an image's augmentation does not depend on the number of ranks.
kornia's augmentations are differentiable but draw from the global torch RNG (no `generator=` argument;
kornia issue #4427) and would be a large dependency for three short ops.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from facegan.data.shard import Shard

TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def _rows(x: torch.Tensor, shard: Shard | None) -> int:
    """How many images' parameters to draw: the whole global batch's when `x` is one rank's shard."""
    return shard.total if shard is not None else x.shape[0]


def _mine(drawn: torch.Tensor, shard: Shard | None) -> torch.Tensor:
    return shard.take(drawn) if shard is not None else drawn


def _uniform(x: torch.Tensor, rng: torch.Generator, shard: Shard | None = None) -> torch.Tensor:
    """One U[0, 1) draw per image, shaped (B, 1, 1, 1) to broadcast."""
    # Drawn in fp32 whatever x's dtype, so the rng stream does not depend on autocast.
    u = _mine(torch.rand(_rows(x, shard), 1, 1, 1, generator=rng, device=rng.device), shard)
    return u.to(device=x.device, dtype=x.dtype)


def color(x: torch.Tensor, rng: torch.Generator, shard: Shard | None = None) -> torch.Tensor:
    """Random brightness, saturation and contrast per image."""
    x = x + (_uniform(x, rng, shard) - 0.5)
    gray = x.mean(dim=1, keepdim=True)
    x = (x - gray) * (_uniform(x, rng, shard) * 2) + gray
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(x, rng, shard) + 0.5) + mean


def translation(
    x: torch.Tensor, rng: torch.Generator, shard: Shard | None = None, ratio: float = TRANSLATION_RATIO
) -> torch.Tensor:
    """Shift each image by a random whole number of pixels; what moves in is 0."""
    b, _, h, w = x.shape
    n = _rows(x, shard)
    dy, dx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    shift_y = _mine(torch.randint(-dy, dy + 1, (n, 1, 1), generator=rng, device=rng.device), shard)
    shift_x = _mine(torch.randint(-dx, dx + 1, (n, 1, 1), generator=rng, device=rng.device), shard)
    # Output pixel (i, j) reads input (i + shift_y, j + shift_x) of the image padded by one zero pixel;
    # coordinates past the edge clamp onto that zero border. A gather, so gradients flow back to x.
    rows = (torch.arange(h, device=x.device).view(1, h, 1) + shift_y.to(x.device) + 1).clamp(0, h + 1)
    cols = (torch.arange(w, device=x.device).view(1, 1, w) + shift_x.to(x.device) + 1).clamp(0, w + 1)
    batch = torch.arange(b, device=x.device).view(b, 1, 1)
    padded = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1)  # (B, H+2, W+2, C)
    return padded[batch, rows, cols].permute(0, 3, 1, 2)  # (B, C, H, W)


def cutout(
    x: torch.Tensor, rng: torch.Generator, shard: Shard | None = None, ratio: float = CUTOUT_RATIO
) -> torch.Tensor:
    """Zero a random (h·ratio × w·ratio) rectangle per image (clipped at the image edges)."""
    _, _, h, w = x.shape
    n = _rows(x, shard)
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    # Centres in [0, h] for even sizes (the paper's range), so every pixel is covered equally often.
    top = _mine(torch.randint(0, h + 1 - ch % 2, (n, 1, 1), generator=rng, device=rng.device), shard)
    left = _mine(torch.randint(0, w + 1 - cw % 2, (n, 1, 1), generator=rng, device=rng.device), shard)
    top, left = top - ch // 2, left - cw // 2
    top, left = top.to(x.device), left.to(x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (ys >= top) & (ys < top + ch) & (xs >= left) & (xs < left + cw)  # (B, H, W)
    return x * (~inside).unsqueeze(1).to(x.dtype)


OPS: dict[str, Callable[[torch.Tensor, torch.Generator, Shard | None], torch.Tensor]] = {
    "color": color,
    "translation": translation,
    "cutout": cutout,
}


def diff_augment(
    x: torch.Tensor, ops: Sequence[str], rng: torch.Generator, shard: Shard | None = None, p: float = 1.0
) -> torch.Tensor:
    """Apply the named ops in order (GANConfig.diffaug_ops), drawing all randomness from `rng`
    (for the whole global batch when `x` is one rank's `shard` of it).

    With p < 1 each op reaches each image with probability p (GANConfig.diffaug_p), independently, as
    ADA applies its augmentations (Karras et al. 2020): D then also sees un-augmented images, so G is
    still held to what a translation would hide (exact positions) while D stays regularised. (On the
    12k anime faces the BatchNorm DCGAN D collapsed with any p < 1; r3gan trained well with 0.5.)
    """
    for op in ops:
        out = OPS[op](x, rng, shard)
        if p < 1:  # p = 1 draws nothing more, so runs that predate diffaug_p replay exactly
            out = torch.where(_uniform(x, rng, shard) < p, out, x)
        x = out
    return x
