"""What does the C2ST classifier key on? Real images against real images changed in ways that keep content.

    python bench/c2st_probe.py --data data/anime64
    python bench/c2st_probe.py --data data/anime64 --checkpoint facegan/pretrained_models/anime64.safetensors

Two disjoint halves of the real set (`--num` images each) go through `facegan.metrics.c2st` (the
release protocol's classifier, seed 0), first unchanged, then with the second half blurred (Gaussian
σ 0.5), smoothed (2× area down, bilinear up), re-saved as JPEG quality 90, or given Gaussian noise
(σ 3 grey levels); then central crops of both, the second's moved by 0, 1, 4 or 8 pixels: how exactly
a generator must place aligned faces (the classifier flattens its last map, so it sees position; an
8-pixel move also keeps a JPEG source's 8×8 block grid aligned, so it tells grid from position).
Accuracy near 0.5: the change is invisible to the detector; near 1.0: it separates real images from
the same images changed that way, so a generator must get that property right before C2ST can drop.
With `--checkpoint`, each generator is also measured raw and with both sides smoothed, which tells
whether detail above half the sampling rate is all that gives its faces away.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facegan.data.dataset import resolve_dataset
from facegan.errors import FaceganError
from facegan.metrics.c2st import c2st
from facegan.metrics.evaluate import fake_batches, to_uint8
from facegan.sampling.generate import load_generator

Images = np.ndarray  # uint8 (N, 3, H, W)


def crop(x: Images, dx: int = 0) -> Images:
    """The central (H-16)×(W-16) window, moved `dx` pixels to the right (|dx| <= 8): a shift with no
    wrapped or padded border, which the position-aware classifier would spot by itself."""
    _, _, h, w = x.shape
    return np.ascontiguousarray(x[:, :, 8 : h - 8, 8 + dx : w - 8 + dx])


def blur(x: Images, sigma: float = 0.5) -> Images:
    """3×3 Gaussian blur, edges replicated, rounded back to uint8."""
    taps = torch.exp(-torch.tensor([1.0, 0.0, 1.0]) / (2 * sigma**2))
    taps /= taps.sum()
    kernel = (taps[:, None] * taps[None, :]).expand(3, 1, 3, 3)
    t = F.conv2d(F.pad(torch.tensor(x).float(), (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    return t.round().clamp(0, 255).to(torch.uint8).numpy()


def smooth(x: Images) -> Images:
    """2× area downsampling, then bilinear upsampling: only detail below half the sampling rate stays."""
    t = F.interpolate(F.avg_pool2d(torch.tensor(x).float(), 2), scale_factor=2, mode="bilinear")
    return t.round().clamp(0, 255).to(torch.uint8).numpy()


def rejpeg(x: Images, quality: int = 90) -> Images:
    """Save as JPEG (PIL, `quality`) and decode again."""
    out = []
    for im in x:
        buf = io.BytesIO()
        Image.fromarray(im.transpose(1, 2, 0)).save(buf, "JPEG", quality=quality)
        out.append(np.asarray(Image.open(buf).convert("RGB")).transpose(2, 0, 1))
    return np.stack(out)


def noise(x: Images, sigma: float = 3.0) -> Images:
    """Gaussian noise of `sigma` grey levels (seeded)."""
    noisy = x + np.random.default_rng(1).normal(0.0, sigma, x.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


# Shifts compare central crops of both halves: the first half's at rest, the second's moved.
SHIFTS = (0, 1, 4, 8)
CHANGES: list[tuple[str, Callable[[Images], Images]]] = [
    ("none (real vs real)", lambda x: x),
    ("blur sigma 0.5", blur),
    ("smooth 2x down-up", smooth),
    ("re-JPEG q90", rejpeg),
    ("noise sigma 3", noise),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="the training data (prepared folder, image folder or .zip)")
    ap.add_argument("--checkpoint", nargs="*", default=[], help="generators: .safetensors, .pt or run")
    ap.add_argument("--num", type=int, default=2000, help="real images per half (and generated per set)")
    ap.add_argument(
        "--size", type=int, default=64, help="image size without --checkpoint (with it, the generators' size)"
    )
    args = ap.parse_args()
    if args.num < 4:
        ap.error(f"--num must be at least 4 (C2ST splits each set in two), got {args.num}")
    try:
        gens = [(path, load_generator(path)) for path in args.checkpoint]
        ds = resolve_dataset(args.data, gens[0][1].cfg.size if gens else args.size, quiet=True)
    except FaceganError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    order = np.random.default_rng(0).permutation(ds.count)
    n = min(args.num, ds.count // 2)
    half_a = np.asarray(ds.images[np.sort(order[:n])])
    half_b = np.asarray(ds.images[np.sort(order[n : 2 * n])])
    print(f"# C2ST accuracy (0.5 = indistinguishable), {n} vs {n} images, classifier seed 0")
    for name, change in CHANGES:
        result = c2st(half_a, change(half_b), seed=0)
        print(f"{'real vs real, ' + name:<60} {result.accuracy:.3f} ± {result.stderr:.3f}", flush=True)
    for dx in SHIFTS:
        result = c2st(crop(half_a), crop(half_b, dx), seed=0)
        print(
            f"{f'real vs real, central crops, second moved {dx} px':<60} {result.accuracy:.3f} ± "
            f"{result.stderr:.3f}",
            flush=True,
        )
    for path, g in gens:
        fake = torch.cat([to_uint8(b) for b in fake_batches(g, list(range(n)), 250)]).numpy()
        raw, both = c2st(half_a, fake, seed=0), c2st(smooth(half_a), smooth(fake), seed=0)
        print(f"{str(path)[-44:] + ': raw / both smoothed':<60} {raw.accuracy:.3f} / {both.accuracy:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
