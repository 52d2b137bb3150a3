"""Classifier two-sample test (C2ST): can a small CNN tell generated images from real ones?

A quality measure that needs no pretrained network and no download. Half of the real and half of the
generated images train a small CNN to say "generated"; the accuracy on the other, held-out halves is
the score:

  0.5  the classifier does no better than chance: it could not tell the two sets apart,
  1.0  the sets are trivially separable.

What it does *not* mean: the number is a property of this particular detector (architecture,
training budget, image count) as much as of the generator, so it is not comparable across papers,
datasets or protocols, and it moves with the sample size (more images → a stronger classifier →
higher accuracy). A value near 0.5 can also mean the classifier was too weak or too briefly trained
to find real differences. Use it to compare runs or checkpoints of the same data under the same
settings, next to FID/KID where those are available. The standard error is the binomial one,
√(p(1-p)/n_test), and only covers the finite test set, not the variation from retraining the
classifier.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ImageArray = np.ndarray | torch.Tensor


@dataclass(frozen=True)
class C2STResult:
    """Held-out accuracy, its binomial standard error, and the test/train sizes (both classes)."""

    accuracy: float
    stderr: float
    n_test: int
    n_train: int


def _classifier(size: int, base: int = 16) -> nn.Sequential:
    """A few stride-2 convs down to 4×4, then one linear layer on the flattened map.

    Flattening (instead of global pooling) keeps where things are, so layout errors are visible too.
    """
    layers: list[nn.Module] = []
    c_in, c, s = 3, base, size
    while s > 4:
        layers += [nn.Conv2d(c_in, c, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        c_in, c, s = c, min(c * 2, 8 * base), s // 2
    layers += [nn.Flatten(), nn.Linear(c_in * s * s, 1)]
    return nn.Sequential(*layers)


def _prepare(images: ImageArray, max_size: int) -> torch.Tensor:
    """uint8 (N, 3, H, W) → float32 in [-1, 1], area-downsampled to at most max_size px."""
    # torch.tensor copies, so read-only arrays (a dataset's memory map) are fine.
    x = images if isinstance(images, torch.Tensor) else torch.tensor(np.asarray(images))
    if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected uint8 images (N, 3, H, W), got {x.dtype} {tuple(x.shape)}")
    x = x.float().div_(127.5).sub_(1.0)
    if max(x.shape[2], x.shape[3]) > max_size:
        x = F.adaptive_avg_pool2d(x, (max_size, max_size))
    return x


def c2st(
    real: ImageArray,
    fake: ImageArray,
    *,
    seed: int = 0,
    epochs: int = 8,
    batch_size: int = 64,
    lr: float = 1e-3,
    max_size: int = 64,
    device: str | torch.device = "cpu",
    check: Callable[[], None] | None = None,
) -> C2STResult:
    """Train on half of `real` vs half of `fake` (uint8 (N, 3, H, W)), report held-out accuracy.

    The two sets are truncated to the same size n (balanced classes, so chance is exactly 0.5);
    each is split into n//2 training and n - n//2 test images. Images above `max_size` px are
    area-downsampled first to bound the cost (a few thousand 64 px images train in seconds on a
    CPU). Deterministic for a given seed on a given CPU machine: the split, initialisation and batch
    order come from seeded generators (the model uses no other randomness), and torch's global RNG
    is left as it was (CUDA's is never touched). `check` is called before each training batch and may
    raise to abort (evaluate's cancellation).
    """
    xr, xf = _prepare(real, max_size), _prepare(fake, max_size)
    if xr.shape[2:] != xf.shape[2:]:
        raise ValueError(f"real and fake sizes differ: {tuple(xr.shape[2:])} vs {tuple(xf.shape[2:])}")
    n = min(len(xr), len(xf))
    if n < 4:
        raise ValueError(f"C2ST needs at least 4 images per set, got {len(xr)} real and {len(xf)} fake")
    rng = np.random.default_rng(seed)
    pr = torch.from_numpy(rng.permutation(len(xr))[:n])
    pf = torch.from_numpy(rng.permutation(len(xf))[:n])
    half = n // 2
    x_train = torch.cat([xr[pr[:half]], xf[pf[:half]]])
    y_train = torch.cat([torch.zeros(half), torch.ones(half)])
    x_test = torch.cat([xr[pr[half:]], xf[pf[half:]]])
    y_test = torch.cat([torch.zeros(n - half), torch.ones(n - half)])

    device = torch.device(device)
    # Initialise on the CPU from a private seed. Not torch.manual_seed: that also reseeds every GPU,
    # which would change the random stream of a training run that evaluates mid-way.
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        model = _classifier(x_train.shape[2])
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.5, 0.999))
    order_gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x_train), generator=order_gen).split(batch_size):
            if check is not None:
                check()
            xb, yb = x_train[idx].to(device), y_train[idx].to(device)
            loss = F.binary_cross_entropy_with_logits(model(xb).flatten(), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    correct = 0
    with torch.inference_mode():
        for xb, yb in zip(x_test.split(512), y_test.split(512), strict=True):
            pred = (model(xb.to(device)).flatten() > 0).float().cpu()
            correct += int((pred == yb).sum())
    n_test = len(x_test)
    acc = correct / n_test
    return C2STResult(acc, math.sqrt(acc * (1 - acc) / n_test), n_test, len(x_train))
