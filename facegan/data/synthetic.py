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

import math

import numpy as np
from PIL import Image, ImageDraw

from facegan.data.synthetic_palette import (
    HAIR_COLOURS,
    HAIR_STYLES,
    IRIS_COLOURS,
    MOUTHS,
    distance,
    jitter,
    mix,
    random_colour,
    shade,
    skin_colour,
    weighted_choice,
)
from facegan.data.synthetic_shapes import (
    Painter,
    background,
    band,
    draw_eye,
    draw_hair_back,
    draw_hair_front,
    draw_mouth,
    ellipse,
    face_outline,
    half_width_at,
)

# Supersampling factor and the canvas bound: 4x is enough for smooth edges after Lanczos,
# and capping the canvas keeps large outputs (256, 512) fast.
_SUPERSAMPLE = 4
_MAX_CANVAS = 512


def draw_face(rng: np.random.Generator, size: int) -> np.ndarray:
    """One face as a (size, size, 3) uint8 RGB array.

    The face drawn depends only on the state of `rng`, never on `size`, so one random state
    gives the same face at every resolution.
    """
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    side = max(size, min(_SUPERSAMPLE * size, _MAX_CANVAS))

    # --- appearance (all draws are independent of `size`) ---
    skin = skin_colour(rng)
    shadow = shade(skin, 0.84)
    hair = jitter(rng, weighted_choice(rng, HAIR_COLOURS), 10.0)
    style = weighted_choice(rng, HAIR_STYLES)
    if style == "bald" and rng.uniform() < 0.5:
        hair = jitter(rng, (120, 118, 116), 12.0)
    # Brows match natural hair but stay dark for pale or unnatural colours, as they usually do.
    brow = shade(hair, 0.7) if sum(hair) < 360 else mix(hair, (60, 44, 34), 0.6)
    iris = jitter(rng, weighted_choice(rng, IRIS_COLOURS), 8.0)
    lip = mix(skin, jitter(rng, (176, 72, 78), 10.0), rng.uniform(0.35, 0.6))
    if rng.uniform() < 0.12:  # Lipstick.
        lip = jitter(rng, ((200, 30, 50), (220, 90, 140), (130, 30, 70))[rng.integers(3)], 10.0)
    clothes = random_colour(rng)

    # --- geometry in face space ---
    fh = rng.uniform(1.2, 1.42)  # Half-height relative to half-width 1.
    jaw = rng.uniform(2.0, 3.0)
    taper = rng.uniform(0.0, 0.3)
    outline = face_outline(fh, jaw, taper)
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
    mouth_w = min(rng.uniform(0.2, 0.34), 0.55 * half_width_at(outline, mouth_y))
    mouth_kind = weighted_choice(rng, MOUTHS)

    # --- placement on the canvas: face width 54-68% of the frame, centred ---
    scale = side * rng.uniform(0.27, 0.34)
    centre = (side * (0.5 + rng.normal(0.0, 0.02)), side * (0.53 + rng.normal(0.0, 0.02)))
    roll = math.radians(float(np.clip(rng.normal(0.0, 4.0), -9.0, 9.0)))

    image = background(rng, side, skin)
    p = Painter(ImageDraw.Draw(image), centre, scale, roll)

    # Back to front: hair behind the head, body, neck, ears, face, features, front hair.
    draw_hair_back(p, rng, style, hair, fh)
    p.polygon(ellipse(0.0, fh + 1.15, 2.0, 0.85, 48), clothes)
    neck_w = rng.uniform(0.42, 0.55)
    p.polygon(
        np.array([[-neck_w, 0.0], [neck_w, 0.0], [neck_w * 1.1, fh + 0.6], [-neck_w * 1.1, fh + 0.6]]),
        shade(skin, 0.78),
    )
    for side_sign in (-1.0, 1.0):
        # The ear on the side the head turns towards slips behind the face outline.
        ear_x = side_sign * (0.97 - 0.12 * max(0.0, side_sign * yaw))
        p.polygon(ellipse(ear_x, eye_y + 0.2, 0.14, 0.25, 20), shadow)
        p.polygon(ellipse(ear_x * 1.01, eye_y + 0.2, 0.09, 0.18, 16), skin)

    # Side lighting: a shadowed outline with the lit face shifted away from the shadow.
    light = float(rng.choice((-1.0, 1.0)))
    p.polygon(outline, shadow)
    lit = outline * np.array([0.93, 0.995]) + np.array([light * 0.07, -0.005])
    p.polygon(lit, skin)

    if rng.uniform() < 0.3:  # Blush.
        blush = mix(skin, (236, 110, 130), 0.3)
        for side_sign in (-1.0, 1.0):
            p.polygon(ellipse(shift + side_sign * 0.5, nose_y, 0.16, 0.09, 20), blush)
    beard = shade(hair, 0.85)
    # Beards only where they contrast with the skin; otherwise they read as a smudge.
    if style != "long" and distance(beard, skin) > 90 and rng.uniform() < 0.14:
        # Jaw below the sideburns, closed by a moustache line just under the nose.
        jaw_arc = outline[outline[:, 1] > eye_y + 0.25]
        top = np.array([[shift - 0.5, nose_y + 0.14], [shift, nose_y + 0.08], [shift + 0.5, nose_y + 0.14]])
        p.polygon(np.concatenate([jaw_arc, top]), beard)

    for side_sign in (-1.0, 1.0):
        # Foreshortening: the eye on the far side of the turn looks narrower.
        squeeze = 1.0 - 0.3 * max(0.0, side_sign * yaw)
        ex = shift + side_sign * eye_dx * (1.0 - 0.12 * max(0.0, side_sign * yaw))
        draw_eye(
            p,
            ex,
            eye_y,
            eye_rx * squeeze,
            eye_ry,
            iris,
            iris_r * min(1.0, squeeze + 0.15),
            gaze,
            shade(brow, 0.6),
        )
        bx = ex + side_sign * np.linspace(-0.16, 0.2, 12) * squeeze
        t = np.linspace(0.0, 1.0, 12)
        tilt = rng.uniform(-0.06, 0.06)
        by = brow_y - 0.06 * np.sin(math.pi * t) + tilt * t
        p.polygon(band(bx, by, rng.uniform(0.025, 0.045) * (1.2 - 0.6 * t)), brow)

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
        p.polygon(ellipse(nose_x + s * nose_w * 0.55, nose_y, 0.04, 0.022, 12), shade(skin, 0.6))
    draw_mouth(p, rng, mouth_kind, shift * 1.1, mouth_y, mouth_w, lip)

    draw_hair_front(p, rng, style, hair, fh, brow_y)

    if rng.uniform() < 0.12:  # Glasses.
        frame = jitter(rng, ((20, 20, 20), (120, 70, 30), (170, 170, 176))[rng.integers(3)], 8.0)
        for side_sign in (-1.0, 1.0):
            ex = shift + side_sign * eye_dx
            p.line(ellipse(ex, eye_y, eye_rx + 0.1, eye_ry + 0.12, 24), frame, 0.035, closed=True)
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
