"""Time facegan's GIF writer (Pillow, one shared palette) against imageio v3 on a real latent walk.

    python bench/gif_writers.py                 # 60 frames of the shipped celeba64, 512 px Lanczos
    python bench/gif_writers.py --frames 60 --size native --repeats 7

Each row encodes the same decoded frames (generation excluded), best and median of `--repeats`
runs, and reports whether every decoded frame equals facegan's pixel for pixel and whether the
frame count, size, frame duration and loop flag match. imageio is optional here (not a facegan
dependency): `pip install imageio` to get its rows. Its Pillow plugin takes arrays, so a shared
palette can only reach it as RGB frames Pillow re-quantizes ("rgb") or as index frames plus a
`palette=` option ("indexed").
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image, ImageSequence

from facegan.sampling.generate import interpolation, load_generator, resize, to_pil, walk_gif
from facegan.sampling.gif import shared_palette
from facegan.sharing import pretrained


def _imageio_rows(size: str, duration: int) -> dict[str, Callable[[torch.Tensor], bytes]]:
    try:
        import imageio.v3 as iio
    except ImportError:
        print("imageio is not installed: its rows are skipped (pip install imageio)")
        return {}

    def frames(images: torch.Tensor) -> tuple[list[Image.Image], Image.Image]:
        native = [to_pil(img) for img in images]
        palette = shared_palette(native)
        return [
            resize(im, size, "lanczos").quantize(palette=palette, dither=Image.Dither.NONE) for im in native
        ], palette

    def rgb(images: torch.Tensor) -> bytes:
        out, _ = frames(images)
        stack = np.stack([np.asarray(im.convert("RGB")) for im in out])
        return iio.imwrite("<bytes>", stack, extension=".gif", duration=duration, loop=0)

    def indexed(images: torch.Tensor) -> bytes:
        out, palette = frames(images)
        stack = np.stack([np.asarray(im) for im in out])
        return iio.imwrite(
            "<bytes>",
            stack,
            extension=".gif",
            mode="P",
            palette=palette.getpalette(),
            duration=duration,
            loop=0,
        )

    return {"imageio v3, rgb frames": rgb, "imageio v3, indexed + palette": indexed}


def describe(data: bytes) -> tuple[dict[str, object], np.ndarray]:
    """(frame count, size, durations, loop, bytes), and every frame decoded to RGB."""
    with Image.open(io.BytesIO(data)) as im:
        durations, frames = set(), []
        for frame in ImageSequence.Iterator(im):
            durations.add(frame.info.get("duration"))
            frames.append(np.asarray(frame.convert("RGB")))
        info = {
            "frames": len(frames),
            "size": im.size,
            "duration_ms": sorted(durations),
            "loop": im.info.get("loop"),
            "bytes": len(data),
        }
    return info, np.stack(frames)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="celeba64", help="a shipped generator")
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--size", default="512", help="output side in px, or 'native'")
    p.add_argument("--duration", type=int, default=42, help="ms per frame (24 fps as `generate` writes)")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    g = load_generator(pretrained.path(args.model))
    images = interpolation(g, [3, 17], args.frames)
    print(
        f"{args.frames}-frame walk of {args.model}, {args.size} px Lanczos, {args.duration} ms/frame; "
        f"torch threads 1, Pillow {Image.__version__}"
    )
    rows = {"facegan (Pillow, shared palette)": lambda x: walk_gif(x, args.size, "lanczos", args.duration)}
    rows.update(_imageio_rows(args.size, args.duration))
    ref_info = ref_frames = None
    for name, write in rows.items():
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            data = write(images)
            times.append(time.perf_counter() - t0)
        info, frames = describe(data)
        if ref_frames is None:
            ref_info, ref_frames = info, frames
        same = frames.shape == ref_frames.shape and np.array_equal(frames, ref_frames)
        meta = all(info[k] == ref_info[k] for k in ("frames", "size", "duration_ms", "loop"))
        print(
            f"{name:32s} best {min(times):6.3f} s  median {statistics.median(times):6.3f} s  "
            f"{info['bytes'] / 1e6:5.2f} MB  pixels {'equal' if same else 'DIFFER'}  "
            f"frames/size/duration/loop {'equal' if meta else 'DIFFER'}  {info}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
