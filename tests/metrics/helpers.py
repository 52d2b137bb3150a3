"""Helpers for the metrics tests: a counting stand-in for Inception, synthetic faces, a tiny generator."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from facegan.config.schema import ModelConfig
from facegan.data.synthetic import synthetic_face
from facegan.networks.dcgan import DCGANGenerator
from facegan.networks.factory import build_models

SIZE = 32


# ----------------------------------------------------------------------------- helpers


class CountingFeatures(nn.Module):
    """Stand-in for Inception: a fixed random conv + ReLU + global mean, counting what it sees."""

    extractor_id = "test-random-conv-v1"

    def __init__(self, dim: int = 16, seed: int = 0) -> None:
        super().__init__()
        self.num_features = dim  # lets torchmetrics skip its dummy forward pass
        self.conv = nn.Conv2d(3, dim, 5, stride=2)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=gen) * 0.1)
            self.conv.bias.copy_(torch.randn(dim, generator=gen) * 0.1)
        self.calls = 0
        self.images = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dtype == torch.uint8
        self.calls += 1
        self.images += len(x)
        return torch.relu(self.conv(x.float() / 127.5 - 1.0)).mean(dim=(2, 3))


def faces_u8(start: int, n: int, size: int = SIZE) -> np.ndarray:
    """Synthetic faces start..start+n-1 as uint8 (n, 3, size, size)."""
    return np.stack([synthetic_face(i, size).transpose(2, 0, 1) for i in range(start, start + n)])


def tiny_generator(seed: int = 0) -> DCGANGenerator:
    g, _ = build_models(ModelConfig(size=SIZE, latent_dim=16, ngf=8, ndf=8), seed=seed)
    return g.eval()


def run_with_timeout(fn: Callable[[], Any], timeout: float) -> Any:
    """fn() in a daemon thread; fails the test instead of hanging it after `timeout` seconds."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as err:  # re-raised in the test thread below
            box["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        pytest.fail(f"did not finish within {timeout}s (a weights download attempt?)")
    if "error" in box:
        raise box["error"]
    return box.get("value")
