"""Shared by the edit tests: a tiny set of directions (three CelebA names)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from facegan.sampling.directions import Directions

NAMES = ["Smiling", "Blond_Hair", "Eyeglasses"]


def tiny_directions(latent: int = 16, seed: int = 0) -> Directions:
    gen = torch.Generator().manual_seed(seed)
    vectors = F.normalize(torch.randn(len(NAMES), latent, generator=gen), dim=1)
    return Directions(list(NAMES), vectors, torch.tensor([[2.0, 3.0], [3.0, 3.0], [1.0, 4.0]]))
