"""Generating faces: load a generator from a checkpoint or an export, and map seeds to images.

Face number `seed` is always G(z) with z drawn from `torch.Generator().manual_seed(seed)` on the CPU,
and G runs in eval mode (BatchNorm uses its running statistics), so a seed names one face no matter
the batch it is generated in or the device.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.utils import make_grid, save_image

from facegan.checkpoint import load_checkpoint, load_state, read_exported
from facegan.config import RunConfig
from facegan.errors import FaceganError
from facegan.models import Generator

MAX_SEED = 2**63 - 1


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> Generator:
    """A ready-to-use generator (eval mode) from a training checkpoint (.pt / run folder) or an
    exported `.safetensors` file."""
    path = Path(path)
    if path.suffix == ".safetensors":
        cfg, state = read_exported(path)
    else:
        ckpt = load_checkpoint(path)
        cfg, state = RunConfig.from_dict(ckpt["config"]).model, ckpt["G"]
    g = Generator(cfg)
    load_state(g, state, "generator", str(path))
    return g.to(device).eval()


def latents(seeds: list[int], latent_dim: int) -> torch.Tensor:
    """One z per seed, (N, latent_dim, 1, 1), on the CPU."""
    return torch.stack([
        torch.randn(latent_dim, 1, 1, generator=torch.Generator().manual_seed(s)) for s in seeds
    ])


@torch.inference_mode()
def faces(g: Generator, seeds: list[int], batch_size: int = 256) -> torch.Tensor:
    """Images in [-1, 1], (N, 3, S, S) on the CPU, one per seed."""
    device = next(g.parameters()).device
    z = latents(seeds, g.cfg.latent_dim)
    out = [g(chunk.to(device)).float().cpu() for chunk in z.split(batch_size)]
    return torch.cat(out)


def parse_seeds(spec: str) -> list[int]:
    """'7' → [7]; '0-3' → [0, 1, 2, 3]; '1,5,9-10' → [1, 5, 9, 10]."""
    seeds: list[int] = []
    try:
        for part in spec.split(","):
            part = part.strip()
            if "-" in part[1:]:
                lo, hi = part.split("-", 1) if not part.startswith("-") else (part, "")
                a, b = int(lo), int(hi)
                if b < a:
                    raise ValueError
                seeds.extend(range(a, b + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise FaceganError(
            f"bad --seed {spec!r}; use a number, a range like 0-63, or a list like 1,5,9-12"
        ) from None
    if any(s < 0 or s > MAX_SEED for s in seeds):
        raise FaceganError(f"seeds must be between 0 and {MAX_SEED}")
    return seeds


def write_faces(
    images: torch.Tensor, seeds: list[int], out: str | Path, nrow: int | None = None
) -> list[Path]:
    """A grid PNG when `out` ends in an image suffix, else one PNG per seed inside folder `out`."""
    out = Path(out)
    norm = dict(normalize=True, value_range=(-1.0, 1.0))
    if out.suffix.lower() in (".png", ".jpg", ".jpeg"):
        out.parent.mkdir(parents=True, exist_ok=True)
        nrow = nrow or max(1, round(len(seeds) ** 0.5))
        save_image(images, out, nrow=nrow, padding=2, **norm)
        return [out]
    if out.exists() and not out.is_dir():
        raise FaceganError(f"--out {str(out)!r} is a file; give a .png for a grid or a folder")
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for img, seed in zip(images, seeds):
        path = out / f"seed{seed:06d}.png"
        save_image(img, path, **norm)
        paths.append(path)
    return paths


def grid(images: torch.Tensor, nrow: int = 8) -> torch.Tensor:
    """(3, H, W) grid in [0, 1] of images in [-1, 1]."""
    return make_grid(images, nrow=nrow, padding=2, normalize=True, value_range=(-1.0, 1.0))

