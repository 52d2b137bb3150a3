"""Fourier amplitude of generated faces against real ones: where a generator leaves a periodic pattern.

    python bench/spectrum.py --data ../shared/data/img_align_celeba.zip \
        --checkpoint facegan/pretrained_models/celeba64.safetensors runs/00001-.../checkpoints/best.pt

A transposed conv with stride 2 leaves a checkerboard (Odena et al. 2016; Durall et al. 2020 show it as
excess high-frequency amplitude), which a small real-vs-fake classifier (C2ST) finds before anything
else. For each generator this prints the ratio of its mean amplitude spectrum (grey level, per-image
mean removed, `--num` images from seeds 0…) to the real images' at the checkerboard frequencies —
(size/2, size/2) is the one-pixel checkerboard, (size/4, size/4) a two-pixel one — and by radius.
1.0 is the real images' amplitude; well above 1 is a pattern the data does not have.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facegan.data.dataset import resolve_dataset
from facegan.sampling.generate import latents, load_generator


def amplitude(images: torch.Tensor) -> torch.Tensor:
    """Mean |FFT| of the grey level of images (N, 3, H, W) in [-1, 1], each image's mean removed."""
    grey = images.float().mean(dim=1)
    grey = grey - grey.mean(dim=(1, 2), keepdim=True)
    return torch.fft.fft2(grey).abs().mean(dim=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="the training data (prepared folder, image folder or .zip)")
    ap.add_argument("--checkpoint", nargs="+", required=True, help="generators: .safetensors, .pt or run")
    ap.add_argument("--num", type=int, default=1000, help="images per set")
    args = ap.parse_args()

    gens = [(path, load_generator(path)) for path in args.checkpoint]
    size = gens[0][1].cfg.size
    ds = resolve_dataset(args.data, size, quiet=True)
    n = min(args.num, ds.count)
    real = amplitude(torch.tensor(np.asarray(ds.images[:n])).float() / 127.5 - 1)
    fy, fx = torch.meshgrid(torch.fft.fftfreq(size), torch.fft.fftfreq(size), indexing="ij")
    radius = (fy**2 + fx**2).sqrt() * size
    h, q = size // 2, size // 4
    bands = [(lo, lo + size // 8) for lo in range(0, int(radius.max()) + 1, size // 8)]
    masks = [(radius >= lo) & (radius < hi) for lo, hi in bands]
    print(f"# fake/real mean amplitude, {n} images each; 1.0 = the real images' amplitude")
    print(
        f"{'generator':<60} {'(h,h)':>7} {'(q,q)':>7} {'(h,0)':>7} {'(0,h)':>7}  by radius "
        + " ".join(f"{lo}-{hi}" for lo, hi in bands)
    )
    for path, g in gens:
        z = latents(list(range(n)), g.cfg.latent_dim)
        with torch.no_grad():
            fake = amplitude(torch.cat([g(zb) for zb in z.split(250)]))
        ratio = fake / real
        by_radius = " ".join(f"{float(fake[m].mean() / real[m].mean()):.2f}" for m in masks)
        at = " ".join(f"{float(ratio[u, v]):7.2f}" for u, v in ((h, h), (q, q), (h, 0), (0, h)))
        print(f"{str(path)[-60:]:<60} {at}  {by_radius}")


if __name__ == "__main__":
    main()
