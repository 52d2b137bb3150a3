"""The classifier two-sample test (facegan/metrics/c2st.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from facegan.metrics import c2st, to_uint8
from tests.metrics.helpers import SIZE, faces_u8, tiny_generator

pytestmark = pytest.mark.usefixtures("one_thread", "short_embedding")


# ----------------------------------------------------------------------------- C2ST


@pytest.fixture(scope="module")
def real_faces() -> np.ndarray:
    return faces_u8(0, 600)


def test_c2st_real_vs_real_is_near_chance(real_faces: np.ndarray) -> None:
    res = c2st(real_faces[:300], real_faces[300:], seed=0)
    assert res.n_test == 300 and res.n_train == 300
    assert 0.35 < res.accuracy < 0.65
    assert res.stderr == pytest.approx(math.sqrt(res.accuracy * (1 - res.accuracy) / 300))


def test_c2st_separates_noise_and_constant_colour(real_faces: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(300, 3, SIZE, SIZE), dtype=np.uint8)
    constant = np.empty((300, 3, SIZE, SIZE), dtype=np.uint8)
    constant[:] = np.array([200, 150, 120], dtype=np.uint8)[:, None, None]
    assert c2st(real_faces[:300], noise, seed=0).accuracy > 0.9
    assert c2st(real_faces[:300], constant, seed=0).accuracy > 0.9


def test_c2st_is_deterministic_and_leaves_global_rng(real_faces: np.ndarray) -> None:
    fake = to_uint8(tiny_generator()(torch.randn(100, 16)).detach())
    state = torch.random.get_rng_state()
    first = c2st(real_faces[:100], fake, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert c2st(real_faces[:100], fake, seed=3) == first


def test_c2st_checks_inputs(real_faces: np.ndarray) -> None:
    with pytest.raises(ValueError, match="sizes differ"):
        c2st(real_faces[:10], faces_u8(0, 10, size=16))
    with pytest.raises(ValueError, match="uint8"):
        c2st(real_faces[:10].astype(np.float32), real_faces[:10])
