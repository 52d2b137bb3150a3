"""Precision, recall, density and coverage (Kynkäänniemi et al. 2019; Naeem et al. 2020), download-free.

SWD scores low-level patch statistics and C2ST whether fakes can be told apart at all; neither says
*how* a generator falls short. These four do, in a feature space, from k-nearest-neighbour balls:
precision / density — are the fakes inside the real manifold (fidelity)? recall / coverage — do the
fakes reach every part of it (diversity)? That split is what a truncation trade-off or mode dropping
shows up in. The arithmetic is the `prdc` package (the authors' code).

The feature space must be computable offline, so it is a randomly initialised, fixed (seeded)
ResNet-18 from torchvision, pooled to 512-d: Naeem et al. (2020, sec. 5) show that density and
coverage in random embeddings still rank generators; the numbers are only comparable under this
protocol, on the same data. With Inception weights at hand, FID/KID remain the published measures.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable

import numpy as np
import torch
import torchvision
from torch import nn

FEATURE_SEED = 0  # the random embedding's weights: fixed, so results are comparable across runs
NEAREST_K = 5  # Naeem et al.'s recommended k


class RandomEmbedding(nn.Module):
    """uint8 (B, 3, H, W) → (B, 512): a seeded, untrained ResNet-18 with global average pooling."""

    def __init__(self, seed: int = FEATURE_SEED) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = torchvision.models.resnet18(weights=None)
        net.fc = nn.Identity()
        self.net = net.eval().requires_grad_(False)

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(next(self.net.parameters()).device).float().div(127.5).sub(1.0)
        features: torch.Tensor = self.net(x)
        return features.float()


def embed(model: nn.Module, batches: Iterable[torch.Tensor]) -> np.ndarray:
    """Features of uint8 image batches as one float32 array (N, D) on the CPU."""
    return torch.cat([model(b).cpu() for b in batches]).numpy().astype(np.float32)


def prdc(real: np.ndarray, fake: np.ndarray, k: int = NEAREST_K) -> dict[str, float]:
    """{"precision", "recall", "density", "coverage"} of feature sets `real` and `fake` (N, D)."""
    from prdc import compute_prdc

    with contextlib.redirect_stdout(io.StringIO()):  # it prints the set sizes; stdout is the user's
        values = compute_prdc(real_features=real, fake_features=fake, nearest_k=k)
    return {name: float(value) for name, value in values.items()}
