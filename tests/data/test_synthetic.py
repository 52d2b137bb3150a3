"""Tests for the procedurally drawn face dataset."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from facegan.data.synthetic import draw_face, synthetic_face

N_FACES = 64


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    """The first 64 faces at 32x32 as float64, shape (64, 32, 32, 3)."""
    return np.stack([synthetic_face(i, 32).astype(np.float64) for i in range(N_FACES)])


@pytest.mark.parametrize("size", [16, 32, 64, 100, 128, 256])
def test_shape_and_dtype(size: int) -> None:
    face = synthetic_face(3, size)
    assert face.shape == (size, size, 3)
    assert face.dtype == np.uint8
    # Writable, so torch.from_numpy can wrap it without a warning.
    assert face.flags.writeable


def test_draw_face_shape_and_dtype() -> None:
    face = draw_face(np.random.default_rng(5), 48)
    assert face.shape == (48, 48, 3)
    assert face.dtype == np.uint8


def test_deterministic_in_seed_and_index() -> None:
    for index in (0, 7, 123):
        a = synthetic_face(index, 64, seed=11)
        b = synthetic_face(index, 64, seed=11)
        assert a.tobytes() == b.tobytes()


def test_draw_face_deterministic_in_rng_state() -> None:
    a = draw_face(np.random.default_rng((4, 2)), 64)
    b = draw_face(np.random.default_rng((4, 2)), 64)
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() == synthetic_face(2, 64, seed=4).tobytes()


def test_different_indices_and_seeds_differ() -> None:
    base = synthetic_face(0, 64).astype(np.float64)
    for other in (synthetic_face(1, 64), synthetic_face(0, 64, seed=1)):
        assert np.abs(base - other).mean() > 10.0


def test_faces_are_diverse(faces: np.ndarray) -> None:
    pair_diff = np.abs(faces[:-1] - faces[1:]).mean(axis=(1, 2, 3))
    assert pair_diff.min() > 15.0
    assert pair_diff.mean() > 40.0
    # Per-image mean colour must spread, not cluster around one palette.
    mean_colour = faces.mean(axis=(1, 2))
    assert (mean_colour.std(axis=0) > 15.0).all()


def test_skin_tones_span_light_to_dark(faces: np.ndarray) -> None:
    # The image centre is cheek/nose skin, so its luminance tracks the skin tone.
    centre = faces[:, 13:19, 13:19].mean(axis=(1, 2))
    luminance = centre @ np.array([0.299, 0.587, 0.114])
    low, high = np.percentile(luminance, [10, 90])
    assert high - low > 80.0


def test_face_is_centred_against_background(faces: np.ndarray) -> None:
    centre = faces[:, 13:19, 13:19].mean(axis=(1, 2))
    # Top corners are background in an aligned crop (shoulders may cover the bottom ones).
    corners = np.concatenate([faces[:, :3, :3], faces[:, :3, -3:]], axis=1).mean(axis=(1, 2))
    distance = np.abs(centre - corners).sum(axis=1)
    assert (distance > 40.0).mean() >= 0.95


def test_same_face_at_every_resolution() -> None:
    # Random draws do not depend on size, so a small face is a downsampled big one.
    for index in range(8):
        small = synthetic_face(index, 32).astype(np.float64)
        big = Image.fromarray(synthetic_face(index, 128))
        shrunk = np.asarray(big.resize((32, 32), Image.Resampling.LANCZOS), np.float64)
        assert np.abs(small - shrunk).mean() < 8.0


@pytest.mark.parametrize(("index", "size", "seed"), [(-1, 64, 0), (0, 0, 0), (0, 64, -2)])
def test_invalid_arguments_raise(index: int, size: int, seed: int) -> None:
    with pytest.raises(ValueError):
        synthetic_face(index, size, seed)
