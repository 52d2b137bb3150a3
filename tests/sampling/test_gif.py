"""Animated GIFs (facegan.sampling.gif): walks share one palette, and every GIF loops with the asked
timing."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image, ImageSequence

from facegan.sampling.generate import walk_gif
from facegan.sampling.gif import gif_bytes


def _decoded(data: bytes) -> tuple[Image.Image, list[np.ndarray], list[int]]:
    im = Image.open(io.BytesIO(data))
    frames = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)]
    durations = [f.info["duration"] for f in ImageSequence.Iterator(im)]
    return im, frames, durations


def test_gif_keeps_every_frame_its_timing_and_loops_forever() -> None:
    frames = [Image.new("RGB", (8, 6), (60 * i, 255 - 60 * i, 9)) for i in range(4)]
    im, decoded, durations = _decoded(gif_bytes(frames, 120))
    assert im.format == "GIF" and im.size == (8, 6) and im.info["loop"] == 0
    assert durations == [120] * 4
    assert [tuple(f[0, 0]) for f in decoded] == [frame.getpixel((0, 0)) for frame in frames]


def test_a_walk_shows_its_frames_in_one_palette_at_the_asked_size() -> None:
    """One palette for the whole walk, so a colour never changes from frame to frame (no flicker)."""
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(5, 3, 16, 16, generator=gen) * 2 - 1
    im, decoded, durations = _decoded(walk_gif(images, "64", "nearest", 40))
    assert im.size == (64, 64) and len(decoded) == 5 and durations == [40] * 5 and im.info["loop"] == 0
    colours = [set(map(tuple, f.reshape(-1, 3))) for f in decoded]
    assert len(set().union(*colours)) <= 256
    for native, frame in zip(images, decoded):
        want = ((native.permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).numpy()
        got = frame[::4, ::4].astype(float)  # a NEAREST 4× upscale: each native pixel once
        assert np.abs(got - want).mean() < 12  # within a 256-colour palette's rounding
