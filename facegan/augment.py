"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training").

The same kind of random, differentiable transform is applied to every image D sees, real or fake, in
both the D and the G step, so D cannot tell the two apart by augmentation artifacts and the gradients
reach G through the transform. Images are in [-1, 1]; the ops and their strengths are the paper's:

  color        brightness + U(-0.5, 0.5), saturation × U(0, 2), contrast × U(0.5, 1.5), per image
  translation  shift by up to 1/8 of the side in each axis, the uncovered border filled with 0 (grey)
  cutout       zero one square of half the side, centred uniformly at random

Written here rather than imported because nothing well kept does it with an explicit generator: every
random draw below comes from the step's `torch.Generator`, which the checkpoint stores, so a resumed run
repeats the exact augmentations. kornia's augmentations are differentiable but draw from the global torch
RNG (no `generator=` argument; kornia issue #4427) and would be a large dependency for three short ops.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def _uniform(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """One U[0, 1) draw per image, shaped (B, 1, 1, 1) to broadcast."""
    # Drawn in fp32 whatever x's dtype, so the rng stream does not depend on autocast.
    u = torch.rand(x.shape[0], 1, 1, 1, generator=rng, device=rng.device)
    return u.to(device=x.device, dtype=x.dtype)


def color(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Random brightness, saturation and contrast per image."""
    x = x + (_uniform(x, rng) - 0.5)
    gray = x.mean(dim=1, keepdim=True)
    x = (x - gray) * (_uniform(x, rng) * 2) + gray
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(x, rng) + 0.5) + mean


def translation(x: torch.Tensor, rng: torch.Generator, ratio: float = TRANSLATION_RATIO) -> torch.Tensor:
    """Shift each image by a random whole number of pixels; what moves in is 0."""
    b, _, h, w = x.shape
    dy, dx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    shift_y = torch.randint(-dy, dy + 1, (b, 1, 1), generator=rng, device=rng.device)
    shift_x = torch.randint(-dx, dx + 1, (b, 1, 1), generator=rng, device=rng.device)
    # Output pixel (i, j) reads input (i + shift_y, j + shift_x) of the image padded by one zero pixel;
    # coordinates past the edge clamp onto that zero border. A gather, so gradients flow back to x.
    rows = (torch.arange(h, device=x.device).view(1, h, 1) + shift_y.to(x.device) + 1).clamp(0, h + 1)
    cols = (torch.arange(w, device=x.device).view(1, 1, w) + shift_x.to(x.device) + 1).clamp(0, w + 1)
    batch = torch.arange(b, device=x.device).view(b, 1, 1)
    padded = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1)  # (B, H+2, W+2, C)
    return padded[batch, rows, cols].permute(0, 3, 1, 2)  # (B, C, H, W)


def cutout(x: torch.Tensor, rng: torch.Generator, ratio: float = CUTOUT_RATIO) -> torch.Tensor:
    """Zero a random (h·ratio × w·ratio) rectangle per image (clipped at the image edges)."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    # Centres in [0, h] for even sizes (the paper's range), so every pixel is covered equally often.
    top = torch.randint(0, h + 1 - ch % 2, (b, 1, 1), generator=rng, device=rng.device) - ch // 2
    left = torch.randint(0, w + 1 - cw % 2, (b, 1, 1), generator=rng, device=rng.device) - cw // 2
    top, left = top.to(x.device), left.to(x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (ys >= top) & (ys < top + ch) & (xs >= left) & (xs < left + cw)  # (B, H, W)
    return x * (~inside).unsqueeze(1).to(x.dtype)


OPS: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {
    "color": color, "translation": translation, "cutout": cutout,
}


def diff_augment(x: torch.Tensor, ops: Sequence[str], rng: torch.Generator) -> torch.Tensor:
    """Apply the named ops in order (GANConfig.diffaug_ops), drawing all randomness from `rng`."""
    for op in ops:
        x = OPS[op](x, rng)
    return x
