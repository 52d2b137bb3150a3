"""Animated GIFs: the one writer behind latent walks (`generate --interpolate`, the server's
/api/interpolate.gif) and a run's progress.gif.

Pillow writes them, not imageio: imageio v3's GIF writer is Pillow's behind an array interface,
which drops a frame's palette. A walk needs one palette shared by every frame (a palette per frame
makes colours flicker); handed to imageio as RGB frames (which Pillow then quantizes again) or as
indices plus a `palette=` option, the same 60-frame 512 px walk came out with the same pixels but 3×
slower (bench/gif_writers.py, one CPU thread: 0.75 s here, 2.3 s and 3.3 s there), and the server's
cost budget (facegan.serve.limits) is sized on this encoder.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image


def gif_bytes(frames: Sequence[Image.Image], duration_ms: int) -> bytes:
    """`frames` as a GIF that loops forever, `duration_ms` per frame (GIF stores 10 ms steps).

    Frames in mode "P" keep their own palette; RGB frames get an adaptive one each. Pillow merges
    consecutive identical frames, so a walk from a seed to itself is a one-frame GIF."""
    buf = io.BytesIO()
    frames[0].save(
        buf, format="GIF", save_all=True, append_images=list(frames[1:]), duration=duration_ms, loop=0
    )
    return buf.getvalue()


def shared_palette(frames: Sequence[Image.Image], colors: int = 256) -> Image.Image:
    """One palette for equally sized RGB frames (quantize each with `im.quantize(palette=...)`), built
    from all of them stacked into one strip, so it holds every colour the animation shows."""
    w, h = frames[0].size
    strip = Image.new("RGB", (w, h * len(frames)))
    for i, im in enumerate(frames):
        strip.paste(im, (0, i * h))
    return strip.quantize(colors=colors)
