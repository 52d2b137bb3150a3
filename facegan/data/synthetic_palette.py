"""The synthetic faces' colours (facegan.data.synthetic): skin, hair and iris palettes, the weighted
style tables, and small RGB helpers (blend, shade, jitter, distance)."""

from __future__ import annotations

import colorsys
from collections.abc import Iterable
from typing import TypeVar

import numpy as np

RGB = tuple[int, int, int]
T = TypeVar("T")

# Skin tones from light to dark; a face interpolates between neighbours so the whole
# range is covered continuously rather than in a few discrete steps.
SKIN_TONES: tuple[RGB, ...] = (
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
HAIR_COLOURS: tuple[tuple[RGB, float], ...] = (
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

IRIS_COLOURS: tuple[tuple[RGB, float], ...] = (
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

HAIR_STYLES: tuple[tuple[str, float], ...] = (
    ("short", 3.0),
    ("long", 3.0),
    ("bangs", 2.5),
    ("bun", 1.2),
    ("curly", 1.0),
    ("bald", 0.8),
)

MOUTHS: tuple[tuple[str, float], ...] = (("smile", 3.0), ("neutral", 2.0), ("open", 1.5))


def rgb(values: Iterable[float]) -> RGB:
    """Clamp three channel values to 0..255 integers."""
    r, g, b = (int(min(255.0, max(0.0, float(v)))) for v in values)
    return (r, g, b)


def weighted_choice(rng: np.random.Generator, table: tuple[tuple[T, float], ...]) -> T:
    """Pick an entry of a (value, weight) table."""
    weights = np.array([w for _, w in table])
    return table[int(rng.choice(len(table), p=weights / weights.sum()))][0]


def jitter(rng: np.random.Generator, colour: RGB, amount: float) -> RGB:
    """Colour with independent per-channel noise so palette entries are never exact."""
    return rgb(np.add(colour, rng.normal(0.0, amount, 3)))


def shade(colour: RGB, factor: float) -> RGB:
    """Brighter (factor > 1) or darker (factor < 1) version of a colour."""
    return rgb(np.multiply(colour, factor))


def mix(a: RGB, b: RGB, t: float) -> RGB:
    """Linear blend from `a` (t=0) to `b` (t=1)."""
    start = np.asarray(a, np.float64)
    return rgb(np.round(start + (np.asarray(b, np.float64) - start) * t))


def distance(a: RGB, b: RGB) -> float:
    """Euclidean RGB distance, used to keep face, hair and background apart."""
    return float(np.linalg.norm(np.subtract(a, b, dtype=np.float64)))


def skin_colour(rng: np.random.Generator) -> RGB:
    """A skin tone anywhere on the light-to-dark ramp, with a slight hue shift."""
    pos = rng.uniform(0.0, len(SKIN_TONES) - 1)
    i = min(int(pos), len(SKIN_TONES) - 2)
    base = mix(SKIN_TONES[i], SKIN_TONES[i + 1], pos - i)
    # Warm/cool and pink/olive shifts: scale channels a little, keeping luminance similar.
    return rgb(np.multiply(base, 1.0 + rng.normal(0.0, 0.035, 3)))


def random_colour(rng: np.random.Generator) -> RGB:
    """A background-ish colour: any hue, from greys to saturated, dark to pale."""
    h = rng.uniform()
    s = rng.uniform(0.0, 0.75) ** 1.3
    v = rng.uniform(0.15, 1.0)
    return rgb(np.multiply(colorsys.hsv_to_rgb(h, s, v), 255.0))
