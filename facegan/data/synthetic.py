"""Procedurally drawn cartoon faces: a training set that needs no download.

The README's main command has to train a DCGAN on a fresh machine, so this module draws
face-like RGB images from a seeded random generator instead of reading CelebA. Each face
is described in a *face space* (x to the right, y downwards, face half-width 1, origin at
the centre of the face outline) and every shape is a polygon in that space. Mapping the
polygon vertices to pixels with one similarity transform gives roll, scale and translation
jitter for free, without rotating images. Shapes are drawn on a supersampled canvas and
downsampled with a Lanczos filter, which anti-aliases the hard polygon edges.

Every random draw is independent of the output size, so the same (seed, index) yields the
same face at every resolution.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Iterable
from typing import TypeVar

import numpy as np
from PIL import Image, ImageDraw

RGB = tuple[int, int, int]
T = TypeVar("T")

# Supersampling factor and the canvas bound: 4x is enough for smooth edges after Lanczos,
# and capping the canvas keeps large outputs (256, 512) fast.
_SUPERSAMPLE = 4
_MAX_CANVAS = 512

# Skin tones from light to dark; a face interpolates between neighbours so the whole
# range is covered continuously rather than in a few discrete steps.
_SKIN_TONES: tuple[RGB, ...] = (
    (255, 227, 205),
    (243, 205, 172),
    (228, 180, 142),
    (204, 148, 108),
    (170, 113, 78),
    (130, 84, 56),
    (92, 60, 42),
    (64, 42, 32),
)

# (colour, weight): natural colours dominate, anime colours add rarer variety.
_HAIR_COLOURS: tuple[tuple[RGB, float], ...] = (
    ((22, 18, 18), 4.0),  # black
    ((52, 34, 24), 3.0),  # dark brown
    ((98, 64, 38), 3.0),  # brown
    ((150, 108, 66), 2.0),  # light brown
    ((222, 188, 118), 2.0),  # blond
    ((238, 226, 186), 0.8),  # platinum
    ((176, 76, 32), 1.2),  # ginger
    ((112, 38, 26), 1.0),  # auburn
    ((140, 138, 136), 1.2),  # grey
    ((222, 222, 218), 0.6),  # white
    ((236, 118, 186), 0.6),  # pink
    ((56, 104, 222), 0.6),  # blue
    ((136, 76, 204), 0.5),  # purple
    ((64, 176, 118), 0.4),  # green
    ((40, 170, 184), 0.4),  # teal
    ((222, 44, 52), 0.4),  # crimson
)

_IRIS_COLOURS: tuple[tuple[RGB, float], ...] = (
    ((86, 52, 28), 4.0),  # brown
    ((48, 30, 20), 3.0),  # dark brown
    ((120, 104, 50), 1.5),  # hazel
    ((70, 130, 80), 1.0),  # green
    ((70, 120, 190), 1.5),  # blue
    ((120, 134, 148), 0.8),  # grey
    ((200, 40, 50), 0.3),  # anime red
    ((150, 70, 210), 0.3),  # anime violet
    ((230, 170, 40), 0.3),  # anime gold
)

_HAIR_STYLES: tuple[tuple[str, float], ...] = (
    ("short", 3.0),
    ("long", 3.0),
    ("bangs", 2.5),
    ("bun", 1.2),
    ("curly", 1.0),
    ("bald", 0.8),
)

_MOUTHS: tuple[tuple[str, float], ...] = (("smile", 3.0), ("neutral", 2.0), ("open", 1.5))


def _rgb(values: Iterable[float]) -> RGB:
    """Clamp three channel values to 0..255 integers."""
    r, g, b = (int(min(255.0, max(0.0, float(v)))) for v in values)
    return (r, g, b)


def _choice(rng: np.random.Generator, table: tuple[tuple[T, float], ...]) -> T:
    """Pick an entry of a (value, weight) table."""
    weights = np.array([w for _, w in table])
    return table[int(rng.choice(len(table), p=weights / weights.sum()))][0]


def _jitter(rng: np.random.Generator, colour: RGB, amount: float) -> RGB:
    """Colour with independent per-channel noise so palette entries are never exact."""
    return _rgb(np.add(colour, rng.normal(0.0, amount, 3)))


def _scale(colour: RGB, factor: float) -> RGB:
    """Brighter (factor > 1) or darker (factor < 1) version of a colour."""
    return _rgb(np.multiply(colour, factor))


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    """Linear blend from `a` (t=0) to `b` (t=1)."""
    start = np.asarray(a, np.float64)
    return _rgb(np.round(start + (np.asarray(b, np.float64) - start) * t))


def _distance(a: RGB, b: RGB) -> float:
    """Euclidean RGB distance, used to keep face, hair and background apart."""
    return float(np.linalg.norm(np.subtract(a, b, dtype=np.float64)))


def _skin_colour(rng: np.random.Generator) -> RGB:
    """A skin tone anywhere on the light-to-dark ramp, with a slight hue shift."""
    pos = rng.uniform(0.0, len(_SKIN_TONES) - 1)
    i = min(int(pos), len(_SKIN_TONES) - 2)
    base = _mix(_SKIN_TONES[i], _SKIN_TONES[i + 1], pos - i)
    # Warm/cool and pink/olive shifts: scale channels a little, keeping luminance similar.
    return _rgb(np.multiply(base, 1.0 + rng.normal(0.0, 0.035, 3)))


def _random_colour(rng: np.random.Generator) -> RGB:
    """A background-ish colour: any hue, from greys to saturated, dark to pale."""
    h = rng.uniform()
    s = rng.uniform(0.0, 0.75) ** 1.3
    v = rng.uniform(0.15, 1.0)
    return _rgb(np.multiply(colorsys.hsv_to_rgb(h, s, v), 255.0))


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 32) -> np.ndarray:
    """Vertices of an axis-aligned ellipse in face space, shape (n, 2)."""
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _band(x: np.ndarray, y: np.ndarray, half_width: np.ndarray) -> np.ndarray:
    """Polygon of a thick, mostly horizontal curve with varying thickness.

    Offsetting vertically instead of along normals is fine because brows and lips are
    close to horizontal, and it avoids computing normals.
    """
    top = np.stack([x, y - half_width], axis=1)
    bottom = np.stack([x, y + half_width], axis=1)[::-1]
    return np.concatenate([top, bottom])


def _face_outline(fh: float, jaw: float, taper: float, n: int = 72) -> np.ndarray:
    """Face outline: round cranium, superellipse jaw (square for jaw > 2), tapered chin."""
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    # y points down, so s > 0 is the lower half; only the jaw gets the squarer exponent.
    p = np.where(s > 0, 2.0 / jaw, 1.0)
    x = np.sign(c) * np.abs(c) ** p
    y = fh * np.sign(s) * np.abs(s) ** p
    x = x * (1.0 - taper * np.clip(s, 0.0, None) ** 2)
    return np.stack([x, y], axis=1)


def _half_width_at(outline: np.ndarray, y: float) -> float:
    """Approximate half-width of the face outline at height `y` (for fitting features)."""
    right = outline[outline[:, 0] > 0]
    near = np.abs(right[:, 1] - y)
    return float(right[int(np.argmin(near)), 0])


class _Painter:
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
        return (points @ self._matrix.T + self._offset).ravel().tolist()

    def polygon(self, points: np.ndarray, fill: RGB) -> None:
        self._draw.polygon(self._pixels(points), fill=fill)

    def line(self, points: np.ndarray, fill: RGB, width: float, closed: bool = False) -> None:
        if closed:
            points = np.concatenate([points, points[:1]])
        px = max(1, round(width * self._scale))
        self._draw.line(self._pixels(points), fill=fill, width=px, joint="curve")


def _background(rng: np.random.Generator, side: int, skin: RGB) -> Image.Image:
    """Solid or vertical-gradient background whose colour stands out from the skin."""
    top = _random_colour(rng)
    for _ in range(8):  # Re-draw a few times: a skin-coloured backdrop hides the face.
        if _distance(top, skin) > 110:
            break
        top = _random_colour(rng)
    if rng.uniform() < 0.5:
        return Image.new("RGB", (side, side), top)
    bottom = _scale(top, rng.uniform(0.55, 1.35))
    ramp = np.linspace(0.0, 1.0, side)[:, None]
    column = np.asarray(top, np.float64) * (1 - ramp) + np.asarray(bottom, np.float64) * ramp
    # A one-pixel-wide column stretched sideways is much cheaper than filling every pixel.
    strip = Image.fromarray(column.astype(np.uint8)[:, None, :], "RGB")
    return strip.resize((side, side), Image.Resampling.NEAREST)


def _draw_hair_back(p: _Painter, rng: np.random.Generator, style: str, hair: RGB, fh: float) -> None:
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
            p.polygon(_ellipse(side * 0.93, -0.05, 0.14, 0.3, 20), hair)
    elif style == "bun":
        r = rng.uniform(0.32, 0.45)
        p.polygon(_ellipse(rng.uniform(-0.15, 0.15), -fh - 0.1 - r * 0.4, r, r * 0.9, 32), hair)
    elif style == "curly":
        n = 64
        t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
        bumps = rng.integers(9, 15)
        radius = 1.0 + 0.07 * np.abs(np.sin(t * bumps / 2 + rng.uniform(0, math.pi)))
        rx, ry = rng.uniform(1.3, 1.55), fh * rng.uniform(1.05, 1.2)
        cy = -rng.uniform(0.25, 0.4)
        p.polygon(np.stack([rx * radius * np.cos(t), cy + ry * radius * np.sin(t)], 1), hair)


def _draw_hair_front(
    p: _Painter, rng: np.random.Generator, style: str, hair: RGB, fh: float, brow_y: float
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
        p.line(sheen, _mix(hair, (255, 255, 255), 0.2), 0.035)


def _draw_eye(
    p: _Painter,
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
    white = _ellipse(x, y, rx, ry, 28)
    p.polygon(white, (244, 242, 238))
    ix = x + gaze * (rx - iris_r)
    for radius, colour in ((iris_r, iris), (iris_r * 0.5, (14, 10, 10))):
        disc = _ellipse(ix, y, radius, radius, 24)
        # Clip the disc to the eye opening: clamp y to the white's boundary at that x.
        dx = np.clip((disc[:, 0] - x) / rx, -1.0, 1.0)
        limit = ry * np.sqrt(1.0 - dx * dx)
        disc[:, 1] = np.clip(disc[:, 1], y - limit, y + limit)
        p.polygon(disc, colour)
    p.polygon(
        _ellipse(ix + iris_r * 0.3, y - iris_r * 0.35, iris_r * 0.22, iris_r * 0.22, 12), (255, 255, 255)
    )
    t = np.linspace(math.pi * 1.05, math.pi * 1.95, 12)
    p.line(np.stack([x + rx * 1.05 * np.cos(t), y + ry * 1.1 * np.sin(t)], 1), lid, 0.045)


def _draw_mouth(
    p: _Painter, rng: np.random.Generator, kind: str, x: float, y: float, w: float, lip: RGB
) -> None:
    """Smiling, neutral or open mouth centred at (x, y) with half-width w."""
    u = np.linspace(-1.0, 1.0, 21)
    xs = x + w * u
    bulge = 1.0 - u * u
    if kind == "smile":
        curve = rng.uniform(0.06, 0.14)
        ys = y - curve * u * u
        p.polygon(_band(xs, ys, 0.012 + 0.03 * np.sqrt(bulge)), _scale(lip, 0.7))
        if rng.uniform() < 0.5:  # Lower lip highlight.
            p.polygon(_band(xs[5:16], ys[5:16] + 0.06, 0.025 * np.sqrt(bulge[5:16])), lip)
    elif kind == "neutral":
        curve = rng.uniform(-0.04, 0.04)
        ys = y - curve * u * u
        upper = np.stack([xs, ys - 0.06 * np.sqrt(bulge) * (1 - 0.3 * np.exp(-((u * 8) ** 2)))], 1)
        lower = np.stack([xs, ys + rng.uniform(0.06, 0.1) * np.sqrt(bulge)], 1)
        p.polygon(np.concatenate([upper, lower[::-1]]), lip)
        p.line(np.stack([xs, ys], 1), _scale(lip, 0.55), 0.02)
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


def draw_face(rng: np.random.Generator, size: int) -> np.ndarray:
    """One face as a (size, size, 3) uint8 RGB array.

    The face drawn depends only on the state of `rng`, never on `size`, so one random state
    gives the same face at every resolution.
    """
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    side = max(size, min(_SUPERSAMPLE * size, _MAX_CANVAS))

    # --- appearance (all draws are independent of `size`) ---
    skin = _skin_colour(rng)
    shadow = _scale(skin, 0.84)
    hair = _jitter(rng, _choice(rng, _HAIR_COLOURS), 10.0)
    style = _choice(rng, _HAIR_STYLES)
    if style == "bald" and rng.uniform() < 0.5:
        hair = _jitter(rng, (120, 118, 116), 12.0)
    # Brows match natural hair but stay dark for pale or unnatural colours, as they usually do.
    brow = _scale(hair, 0.7) if sum(hair) < 360 else _mix(hair, (60, 44, 34), 0.6)
    iris = _jitter(rng, _choice(rng, _IRIS_COLOURS), 8.0)
    lip = _mix(skin, _jitter(rng, (176, 72, 78), 10.0), rng.uniform(0.35, 0.6))
    if rng.uniform() < 0.12:  # Lipstick.
        lip = _jitter(rng, ((200, 30, 50), (220, 90, 140), (130, 30, 70))[rng.integers(3)], 10.0)
    clothes = _random_colour(rng)

    # --- geometry in face space ---
    fh = rng.uniform(1.2, 1.42)  # Half-height relative to half-width 1.
    jaw = rng.uniform(2.0, 3.0)
    taper = rng.uniform(0.0, 0.3)
    outline = _face_outline(fh, jaw, taper)
    yaw = rng.uniform(-1.0, 1.0)
    shift = 0.16 * yaw  # Features slide towards the side the head turns to.
    eye_y = fh * rng.uniform(-0.02, 0.12)
    eye_dx = rng.uniform(0.36, 0.46)
    eye_rx = rng.uniform(0.15, 0.22)
    eye_ry = eye_rx * rng.uniform(0.45, 0.8)
    iris_r = min(eye_ry * rng.uniform(0.95, 1.25), eye_rx * 0.72)
    gaze = rng.uniform(-0.3, 0.3) + 0.3 * yaw
    brow_y = eye_y - eye_ry - rng.uniform(0.1, 0.2)
    nose_y = eye_y + rng.uniform(0.38, 0.5)
    mouth_y = nose_y + rng.uniform(0.24, 0.32)
    mouth_w = min(rng.uniform(0.2, 0.34), 0.55 * _half_width_at(outline, mouth_y))
    mouth_kind = _choice(rng, _MOUTHS)

    # --- placement on the canvas: face width 54-68% of the frame, centred ---
    scale = side * rng.uniform(0.27, 0.34)
    centre = (side * (0.5 + rng.normal(0.0, 0.02)), side * (0.53 + rng.normal(0.0, 0.02)))
    roll = math.radians(float(np.clip(rng.normal(0.0, 4.0), -9.0, 9.0)))

    image = _background(rng, side, skin)
    p = _Painter(ImageDraw.Draw(image), centre, scale, roll)

    # Back to front: hair behind the head, body, neck, ears, face, features, front hair.
    _draw_hair_back(p, rng, style, hair, fh)
    p.polygon(_ellipse(0.0, fh + 1.15, 2.0, 0.85, 48), clothes)
    neck_w = rng.uniform(0.42, 0.55)
    p.polygon(
        np.array([[-neck_w, 0.0], [neck_w, 0.0], [neck_w * 1.1, fh + 0.6], [-neck_w * 1.1, fh + 0.6]]),
        _scale(skin, 0.78),
    )
    for side_sign in (-1.0, 1.0):
        # The ear on the side the head turns towards slips behind the face outline.
        ear_x = side_sign * (0.97 - 0.12 * max(0.0, side_sign * yaw))
        p.polygon(_ellipse(ear_x, eye_y + 0.2, 0.14, 0.25, 20), shadow)
        p.polygon(_ellipse(ear_x * 1.01, eye_y + 0.2, 0.09, 0.18, 16), skin)

    # Side lighting: a shadowed outline with the lit face shifted away from the shadow.
    light = float(rng.choice((-1.0, 1.0)))
    p.polygon(outline, shadow)
    lit = outline * np.array([0.93, 0.995]) + np.array([light * 0.07, -0.005])
    p.polygon(lit, skin)

    if rng.uniform() < 0.3:  # Blush.
        blush = _mix(skin, (236, 110, 130), 0.3)
        for side_sign in (-1.0, 1.0):
            p.polygon(_ellipse(shift + side_sign * 0.5, nose_y, 0.16, 0.09, 20), blush)
    beard = _scale(hair, 0.85)
    # Beards only where they contrast with the skin; otherwise they read as a smudge.
    if style != "long" and _distance(beard, skin) > 90 and rng.uniform() < 0.14:
        # Jaw below the sideburns, closed by a moustache line just under the nose.
        jaw_arc = outline[outline[:, 1] > eye_y + 0.25]
        top = np.array([[shift - 0.5, nose_y + 0.14], [shift, nose_y + 0.08], [shift + 0.5, nose_y + 0.14]])
        p.polygon(np.concatenate([jaw_arc, top]), beard)

    for side_sign in (-1.0, 1.0):
        # Foreshortening: the eye on the far side of the turn looks narrower.
        squeeze = 1.0 - 0.3 * max(0.0, side_sign * yaw)
        ex = shift + side_sign * eye_dx * (1.0 - 0.12 * max(0.0, side_sign * yaw))
        _draw_eye(
            p,
            ex,
            eye_y,
            eye_rx * squeeze,
            eye_ry,
            iris,
            iris_r * min(1.0, squeeze + 0.15),
            gaze,
            _scale(brow, 0.6),
        )
        bx = ex + side_sign * np.linspace(-0.16, 0.2, 12) * squeeze
        t = np.linspace(0.0, 1.0, 12)
        tilt = rng.uniform(-0.06, 0.06)
        by = brow_y - 0.06 * np.sin(math.pi * t) + tilt * t
        p.polygon(_band(bx, by, rng.uniform(0.025, 0.045) * (1.2 - 0.6 * t)), brow)

    nose_x = shift * 1.4  # The nose tip protrudes, so it moves most with yaw.
    nose_w = rng.uniform(0.08, 0.14)
    side_sign = -light
    p.polygon(
        np.array(
            [
                [nose_x * 0.6 + side_sign * 0.03, eye_y + 0.1],
                [nose_x + side_sign * nose_w, nose_y - 0.02],
                [nose_x, nose_y + 0.05],
            ]
        ),
        shadow,
    )
    for s in (-1.0, 1.0):
        p.polygon(_ellipse(nose_x + s * nose_w * 0.55, nose_y, 0.04, 0.022, 12), _scale(skin, 0.6))
    _draw_mouth(p, rng, mouth_kind, shift * 1.1, mouth_y, mouth_w, lip)

    _draw_hair_front(p, rng, style, hair, fh, brow_y)

    if rng.uniform() < 0.12:  # Glasses.
        frame = _jitter(rng, ((20, 20, 20), (120, 70, 30), (170, 170, 176))[rng.integers(3)], 8.0)
        for side_sign in (-1.0, 1.0):
            ex = shift + side_sign * eye_dx
            p.line(_ellipse(ex, eye_y, eye_rx + 0.1, eye_ry + 0.12, 24), frame, 0.035, closed=True)
        p.line(
            np.array([[shift - eye_dx + eye_rx + 0.1, eye_y], [shift + eye_dx - eye_rx - 0.1, eye_y]]),
            frame,
            0.035,
        )

    if side != size:
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    # np.array copies, so callers get a writable array (torch.from_numpy warns otherwise).
    return np.array(image, dtype=np.uint8)


def synthetic_face(index: int, size: int, seed: int = 0) -> np.ndarray:
    """Face number `index` of the synthetic dataset; deterministic in (seed, index).

    Uses ``numpy.random.default_rng((seed, index))`` so any face can be drawn on its own,
    in any order or worker process, and comes out identical at every call.
    """
    if index < 0 or seed < 0:
        raise ValueError(f"index and seed must be non-negative, got {index=} {seed=}")
    return draw_face(np.random.default_rng((seed, index)), size)
