"""Sliced Wasserstein distance between Laplacian-pyramid patch distributions (Karras et al., 2018).

A second download-free measure beside C2ST. C2ST saturates at 100% accuracy long before samples are
good (any visible artefact gives fakes away), so it cannot rank two early or CPU-sized runs; SWD
keeps moving: it compares the distributions of local 7×7 patches at each pyramid level (fine detail at
the full size, structure at coarse levels), so it responds to gradual improvement. Like C2ST it is a
relative measure — compare runs on the same data under the same protocol, not with papers.

Hand-written because no maintained library (torchmetrics, torch-fidelity) implements it; it follows
the ProGAN paper's recipe: 7×7 RGB patch descriptors, per-set channel normalisation, random unit
projections, sorted 1-D Wasserstein distances averaged; reported ×1000 like the paper.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PATCH = 7
_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _blur(x: torch.Tensor) -> torch.Tensor:
    kernel = (_BINOMIAL[:, None] * _BINOMIAL[None, :]).to(x)
    kernel = kernel.expand(x.shape[1], 1, 5, 5)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), kernel, groups=x.shape[1])


def laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """[band at full size, band at 1/2, …, coarsest Gaussian level] of images (N, C, H, W)."""
    bands = []
    for _ in range(levels - 1):
        down = _blur(x)[:, :, ::2, ::2]
        up = torch.zeros_like(x)
        up[:, :, ::2, ::2] = down
        bands.append(x - 4.0 * _blur(up))
        x = down
    bands.append(x)
    return bands


def _descriptors(level: torch.Tensor, per_image: int, gen: torch.Generator) -> torch.Tensor:
    """`per_image` random 7×7 patches of every image, flattened, normalised per channel over the set."""
    n, c, h, w = level.shape
    ys = torch.randint(0, h - PATCH + 1, (n, per_image), generator=gen)
    xs = torch.randint(0, w - PATCH + 1, (n, per_image), generator=gen)
    off = torch.arange(PATCH)
    rows = (ys[..., None] + off)[..., :, None].expand(n, per_image, PATCH, PATCH)
    cols = (xs[..., None] + off)[..., None, :].expand(n, per_image, PATCH, PATCH)
    img = torch.arange(n)[:, None, None, None].expand_as(rows)
    patches = level.permute(0, 2, 3, 1)[img, rows, cols]  # (n, per_image, 7, 7, C)
    desc = patches.reshape(-1, PATCH * PATCH, c)
    desc = (desc - desc.mean(dim=(0, 1))) / desc.std(dim=(0, 1)).clamp_min(1e-8)
    return desc.reshape(len(desc), -1)


def sliced_wasserstein(
    a: torch.Tensor, b: torch.Tensor, gen: torch.Generator, directions: int = 128, repeats: int = 4
) -> float:
    """Mean 1-D Wasserstein-1 distance of `a` and `b` (same row count) along random unit directions."""
    total = 0.0
    for _ in range(repeats):
        dirs = torch.randn(a.shape[1], directions, generator=gen)
        dirs /= dirs.norm(dim=0, keepdim=True)
        pa, _ = torch.sort(a @ dirs, dim=0)
        pb, _ = torch.sort(b @ dirs, dim=0)
        total += (pa - pb).abs().mean().item()
    return total / repeats


@torch.no_grad()
def swd(
    real_u8: torch.Tensor, fake_u8: torch.Tensor, *, seed: int = 0, per_image: int = 32, min_size: int = 16
) -> dict[str, float]:
    """SWD×1e3 per pyramid level ("swd_<res>") and their mean ("swd") of two uint8 image sets.

    Both sets must hold the same number of images (N, 3, S, S). Deterministic in `seed`.
    """
    if real_u8.shape != fake_u8.shape:
        raise ValueError(f"SWD needs equal-sized sets, got {tuple(real_u8.shape)} and {tuple(fake_u8.shape)}")
    size = real_u8.shape[-1]
    levels = max(1, size.bit_length() - min_size.bit_length() + 1)
    results: dict[str, float] = {}
    pyramids = [laplacian_pyramid(x.float().div(127.5).sub(1.0), levels) for x in (real_u8, fake_u8)]
    for i, (lr, lf) in enumerate(zip(*pyramids)):
        gen = torch.Generator().manual_seed(seed * 1000 + i)  # same patch positions for both sets
        dr = _descriptors(lr, per_image, gen)
        gen = torch.Generator().manual_seed(seed * 1000 + i)
        df = _descriptors(lf, per_image, gen)
        results[f"swd_{size >> i}"] = 1e3 * sliced_wasserstein(dr, df, torch.Generator().manual_seed(seed))
    results["swd"] = sum(results.values()) / len(results)
    return results
