"""The synthetic faces' shapes (facegan.data.synthetic): polygons in face space (x to the right, y down,
face half-width 1), a painter that maps them to pixels through one similarity transform, and the
parts drawn with it: background, hair behind and in front of the head, eyes and mouths."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from facegan.data.synthetic_palette import RGB, distance, mix, random_colour, shade


def ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 32) -> np.ndarray:
    """Vertices of an axis-aligned ellipse in face space, shape (n, 2)."""
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def band(x: np.ndarray, y: np.ndarray, half_width: np.ndarray) -> np.ndarray:
    """Polygon of a thick, mostly horizontal curve with varying thickness.

    Offsetting vertically instead of along normals is fine because brows and lips are
    close to horizontal, and it avoids computing normals.
    """
    top = np.stack([x, y - half_width], axis=1)
    bottom = np.stack([x, y + half_width], axis=1)[::-1]
    return np.concatenate([top, bottom])


def face_outline(fh: float, jaw: float, taper: float, n: int = 72) -> np.ndarray:
    """Face outline: round cranium, superellipse jaw (square for jaw > 2), tapered chin."""
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    # y points down, so s > 0 is the lower half; only the jaw gets the squarer exponent.
    p = np.where(s > 0, 2.0 / jaw, 1.0)
    x = np.sign(c) * np.abs(c) ** p
    y = fh * np.sign(s) * np.abs(s) ** p
    x = x * (1.0 - taper * np.clip(s, 0.0, None) ** 2)
    return np.stack([x, y], axis=1)


def half_width_at(outline: np.ndarray, y: float) -> float:
    """Approximate half-width of the face outline at height `y` (for fitting features)."""
    right = outline[outline[:, 0] > 0]
    near = np.abs(right[:, 1] - y)
    return float(right[int(np.argmin(near)), 0])


class Painter:
    """Draws face-space polygons onto a pixel canvas through one similarity transform."""

    def __init__(
        self, draw: ImageDraw.ImageDraw, centre: tuple[float, float], scale: float, roll: float
    ) -> None:
        self._draw = draw
        self._scale = scale
        cos, sin = math.cos(roll), math.sin(roll)
        self._matrix = np.array([[cos, -sin], [sin, cos]]) * scale
        self._offset = np.array(centre)

    def _pixels(self, points: np.ndarray) -> list[float]:
        pixels: list[float] = (points @ self._matrix.T + self._offset).ravel().tolist()
        return pixels

    def polygon(self, points: np.ndarray, fill: RGB) -> None:
        self._draw.polygon(self._pixels(points), fill=fill)

    def line(self, points: np.ndarray, fill: RGB, width: float, closed: bool = False) -> None:
        if closed:
            points = np.concatenate([points, points[:1]])
        px = max(1, round(width * self._scale))
        self._draw.line(self._pixels(points), fill=fill, width=px, joint="curve")


def background(rng: np.random.Generator, side: int, skin: RGB) -> Image.Image:
    """Solid or vertical-gradient background whose colour stands out from the skin."""
    top = random_colour(rng)
    for _ in range(8):  # Re-draw a few times: a skin-coloured backdrop hides the face.
        if distance(top, skin) > 110:
            break
        top = random_colour(rng)
    if rng.uniform() < 0.5:
        return Image.new("RGB", (side, side), top)
    bottom = shade(top, rng.uniform(0.55, 1.35))
    ramp = np.linspace(0.0, 1.0, side)[:, None]
    column = np.asarray(top, np.float64) * (1 - ramp) + np.asarray(bottom, np.float64) * ramp
    # A one-pixel-wide column stretched sideways is much cheaper than filling every pixel.
    strip = Image.fromarray(column.astype(np.uint8)[:, None, :], "RGB")
    return strip.resize((side, side), Image.Resampling.NEAREST)


def draw_hair_back(p: Painter, rng: np.random.Generator, style: str, hair: RGB, fh: float) -> None:
    """Hair that sits behind the head: long hair, a bun, or a curly mass."""
    if style == "long":
        length = fh * rng.uniform(1.0, 1.7)
        width = rng.uniform(1.2, 1.45)
        t = np.linspace(math.pi, 2.0 * math.pi, 33)
        top = np.stack([width * np.cos(t), -0.1 + (fh + 0.15) * np.sin(t)], 1)
        bottom = np.array([[width * 1.05, length], [-width * 1.05, length]])
        p.polygon(np.concatenate([top, bottom]), hair)
    elif style == "bald":
        # A fringe above the ears keeps bald heads reading as heads, not balls; drawn
        # behind the face so only a crescent outside the outline shows.
        for side in (-1.0, 1.0):
            p.polygon(ellipse(side * 0.93, -0.05, 0.14, 0.3, 20), hair)
    elif style == "bun":
        r = rng.uniform(0.32, 0.45)
        p.polygon(ellipse(rng.uniform(-0.15, 0.15), -fh - 0.1 - r * 0.4, r, r * 0.9, 32), hair)
    elif style == "curly":
        n = 64
        t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
        bumps = rng.integers(9, 15)
        radius = 1.0 + 0.07 * np.abs(np.sin(t * bumps / 2 + rng.uniform(0, math.pi)))
        rx, ry = rng.uniform(1.3, 1.55), fh * rng.uniform(1.05, 1.2)
        cy = -rng.uniform(0.25, 0.4)
        p.polygon(np.stack([rx * radius * np.cos(t), cy + ry * radius * np.sin(t)], 1), hair)


def draw_hair_front(
    p: Painter, rng: np.random.Generator, style: str, hair: RGB, fh: float, brow_y: float
) -> None:
    """Hair cap over the cranium, with a hairline that depends on the style."""
    if style == "bald":
        return
    volume = rng.uniform(0.06, 0.18) if style != "curly" else 0.2
    # Outer edge: upper half of an ellipse a bit larger than the face.
    t = np.linspace(math.pi, 2.0 * math.pi, 33)
    outer = np.stack([(1.0 + volume) * np.cos(t), -0.05 + (fh + volume) * np.sin(t)], 1)
    # Where the cap ends at the temples; long hair frames the face further down.
    side_y = {"long": fh * rng.uniform(0.35, 0.8), "bangs": brow_y + 0.2}.get(
        style, brow_y + rng.uniform(-0.05, 0.15)
    )
    outer = np.concatenate([[[-1.0 - volume, side_y]], outer, [[1.0 + volume, side_y]]])
    # Hairline from the right temple back to the left one.
    xs = np.linspace(1.0, -1.0, 25)
    if style == "bangs":
        centre_y = brow_y - rng.uniform(0.0, 0.12)
        hairline = centre_y + (side_y - centre_y) * np.abs(xs) ** 4
        teeth = rng.integers(4, 9)  # Jagged fringe: a few points per strand.
        hairline = hairline + 0.06 * np.abs(np.sin(xs * teeth * math.pi / 2))
    else:
        centre_y = -fh * rng.uniform(0.45, 0.7)
        hairline = centre_y + (side_y - centre_y) * np.abs(xs) ** 2.5
        hairline = hairline + rng.uniform(-0.12, 0.12) * xs  # Side parting.
    inner_x = xs * (0.88 if style == "long" else 0.97)
    p.polygon(np.concatenate([outer, np.stack([inner_x, hairline], 1)]), hair)
    # A lighter sheen arc gives the cap some volume.
    if rng.uniform() < 0.35:
        ts = np.linspace(1.25 * math.pi, 1.55 * math.pi, 10)
        sheen = np.stack([0.8 * np.cos(ts), -0.05 + (fh - 0.05) * np.sin(ts)], 1)
        p.line(sheen, mix(hair, (255, 255, 255), 0.2), 0.035)


def draw_eye(
    p: Painter,
    x: float,
    y: float,
    rx: float,
    ry: float,
    iris: RGB,
    iris_r: float,
    gaze: float,
    lid: RGB,
) -> None:
    """White, iris and pupil clipped to the eye opening, then the upper lid line."""
    white = ellipse(x, y, rx, ry, 28)
    p.polygon(white, (244, 242, 238))
    ix = x + gaze * (rx - iris_r)
    for radius, colour in ((iris_r, iris), (iris_r * 0.5, (14, 10, 10))):
        disc = ellipse(ix, y, radius, radius, 24)
        # Clip the disc to the eye opening: clamp y to the white's boundary at that x.
        dx = np.clip((disc[:, 0] - x) / rx, -1.0, 1.0)
        limit = ry * np.sqrt(1.0 - dx * dx)
        disc[:, 1] = np.clip(disc[:, 1], y - limit, y + limit)
        p.polygon(disc, colour)
    p.polygon(
        ellipse(ix + iris_r * 0.3, y - iris_r * 0.35, iris_r * 0.22, iris_r * 0.22, 12), (255, 255, 255)
    )
    t = np.linspace(math.pi * 1.05, math.pi * 1.95, 12)
    p.line(np.stack([x + rx * 1.05 * np.cos(t), y + ry * 1.1 * np.sin(t)], 1), lid, 0.045)


def draw_mouth(
    p: Painter, rng: np.random.Generator, kind: str, x: float, y: float, w: float, lip: RGB
) -> None:
    """Smiling, neutral or open mouth centred at (x, y) with half-width w."""
    u = np.linspace(-1.0, 1.0, 21)
    xs = x + w * u
    bulge = 1.0 - u * u
    if kind == "smile":
        curve = rng.uniform(0.06, 0.14)
        ys = y - curve * u * u
        p.polygon(band(xs, ys, 0.012 + 0.03 * np.sqrt(bulge)), shade(lip, 0.7))
        if rng.uniform() < 0.5:  # Lower lip highlight.
            p.polygon(band(xs[5:16], ys[5:16] + 0.06, 0.025 * np.sqrt(bulge[5:16])), lip)
    elif kind == "neutral":
        curve = rng.uniform(-0.04, 0.04)
        ys = y - curve * u * u
        upper = np.stack([xs, ys - 0.06 * np.sqrt(bulge) * (1 - 0.3 * np.exp(-((u * 8) ** 2)))], 1)
        lower = np.stack([xs, ys + rng.uniform(0.06, 0.1) * np.sqrt(bulge)], 1)
        p.polygon(np.concatenate([upper, lower[::-1]]), lip)
        p.line(np.stack([xs, ys], 1), shade(lip, 0.55), 0.02)
    else:
        curve = rng.uniform(0.0, 0.1)
        ys = y - curve * u * u
        height = rng.uniform(0.1, 0.2)
        top = np.stack([xs, ys - 0.03 * bulge], 1)
        bottom = np.stack([xs, ys + height * bulge**0.7], 1)
        p.polygon(np.concatenate([top, bottom[::-1]]), (70, 22, 28))
        teeth = np.stack([xs, ys - 0.03 * bulge + 0.045 * bulge**0.5], 1)
        p.polygon(np.concatenate([top[3:18], teeth[3:18][::-1]]), (246, 244, 236))
        p.line(np.concatenate([top, bottom[::-1]]), lip, 0.035, closed=True)
