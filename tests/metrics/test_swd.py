"""Sliced Wasserstein distance over Laplacian pyramids (facegan/metrics/swd.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.metrics.helpers import faces_u8

pytestmark = pytest.mark.usefixtures("one_thread", "short_embedding")


# ----------------------------------------------------------------------------- sliced Wasserstein


def test_swd_ranks_distributions_and_is_deterministic() -> None:
    from facegan.metrics import swd

    real, other = torch.from_numpy(faces_u8(0, 48)), torch.from_numpy(faces_u8(48, 48))
    noise = torch.from_numpy(np.random.default_rng(0).integers(0, 256, real.shape, dtype=np.uint8))
    same = swd(real, other)
    assert set(same) == {"swd_32", "swd_16", "swd"}
    assert same == swd(real, other)
    assert swd(real, noise)["swd"] > 2 * same["swd"]
    blurred = torch.nn.functional.avg_pool2d(other.float(), 2).repeat_interleave(2, 2).repeat_interleave(2, 3)
    assert swd(real, blurred.round().to(torch.uint8))["swd_32"] > 1.2 * same["swd_32"]  # detail is lost
    assert swd(real, real)["swd"] < 1e-6


def test_sliced_wasserstein_of_shifted_gaussians() -> None:
    """Along unit direction u, N(0, I) vs N(m, I) differ by a shift of m·u: SWD = E|m·u|."""
    from facegan.metrics import sliced_wasserstein

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(2000, 4, generator=gen)  # the fakes are the reals shifted: exact at any count
    shift = torch.tensor([1.0, 0.0, 0.0, 0.0])
    got = sliced_wasserstein(a, a + shift, torch.Generator().manual_seed(1), directions=2000, repeats=1)
    # E|u_1| for u uniform on the 3-sphere in R^4 is 4 / (3 pi)
    assert got == pytest.approx(4 / (3 * math.pi), rel=0.05)


def test_laplacian_pyramid_reconstructs_the_image() -> None:
    from facegan.metrics.swd import _blur, laplacian_pyramid

    x = torch.from_numpy(faces_u8(0, 2)).float() / 127.5 - 1
    bands = laplacian_pyramid(x, 3)
    assert [b.shape[-1] for b in bands] == [32, 16, 8]
    img = bands[-1]
    for band in reversed(bands[:-1]):
        up = torch.zeros_like(band)
        up[:, :, ::2, ::2] = img
        img = band + 4.0 * _blur(up)
    assert torch.allclose(img, x, atol=1e-5)
