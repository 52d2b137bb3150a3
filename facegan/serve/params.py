"""The API's query parameters: their bounds, their FastAPI types, and one line of help for each.

Every parameter is bounded. FastAPI validates them; a failure becomes a 4xx whose message comes from
HINTS (see `validation_message`), never pydantic's multi-line report.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import Query
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from facegan.errors import FaceganError
from facegan.sampling.display import MAX_TRUNCATION, MIN_TRUNCATION
from facegan.sampling.generate import MAX_SEED

if TYPE_CHECKING:
    from facegan.sampling.directions import Directions

MAX_GRID = 64
MIN_FRAMES, MAX_FRAMES = 2, 60
SIZES = ("native", "32", "64", "128", "256", "512")
# Random seeds are drawn below 2^32 so permalinks stay short; any seed up to MAX_SEED is accepted.
RANDOM_SEED_BOUND = 2**32
DISPLAY_SIZE = "512"  # the page's face: a power of two, so NEAREST upscaling is an integer factor
WALK_SIZE = "256"

SizeName = Literal["native", "32", "64", "128", "256", "512"]
Resample = Literal["nearest", "lanczos"]
Method = Literal["slerp", "lerp"]

# The page's and the API's "variety" is a truncation t: latent components beyond ±t are redrawn (see
# facegan.sampling.generate.latents; a truncated normal, which shrinks the latent's norm, not StyleGAN's pull
# toward the mean latent); 0 = the full distribution. A request without one gets its model's display
# default (`ServedModel.variety`): measured per model and stored with it, absent = the full
# distribution. The page offers these, plus the model's default where it is none of them.
VARIETY_CHOICES = ((1.0, "low"), (1.5, "medium"), (2.0, "high"), (0.0, "full"))

# Query parameter types shared by the routes. The routes module imports them by name: FastAPI resolves
# the routes' (string) annotations against that module's globals.
SeedQ = Annotated[int | None, Query(ge=0, le=MAX_SEED, description="face number; omit for random")]
FromQ = Annotated[int, Query(alias="from", ge=0, le=MAX_SEED)]
ToQ = Annotated[int, Query(alias="to", ge=0, le=MAX_SEED)]
ModelQ = Annotated[str | None, Query(max_length=64, description="a loaded model; default: first")]
SizeQ = Annotated[SizeName, Query(description="output width/height in px, or native")]
ResampleQ = Annotated[Resample, Query(description="upscaling filter (shrinking uses lanczos)")]
GridQ = Annotated[int, Query(ge=1, le=MAX_GRID)]
FramesQ = Annotated[int, Query(ge=MIN_FRAMES, le=MAX_FRAMES)]
DurationQ = Annotated[int, Query(ge=20, le=1000, description="ms per frame")]
TruncQ = Annotated[
    float | None,
    Query(
        ge=0,
        le=MAX_TRUNCATION,
        description=f"variety: latent components beyond ±t are redrawn ({MIN_TRUNCATION}-{MAX_TRUNCATION}; "
        f"a truncated normal, which shrinks the latent's norm, not StyleGAN's truncation toward the mean "
        f"latent); 0 = the full distribution; omit for the model's measured display default "
        f"(display_truncation in /api/models)",
    ),
]
EditQ = Annotated[
    str | None,
    Query(
        max_length=1000,
        description="attribute edits NAME:AMOUNT,… with AMOUNT from -1 to 1 "
        "(the model's edits are listed by /api/models)",
    ),
]

# Friendly one-line messages for FastAPI's validation failures, keyed by parameter name.
_SEED_MSG = f"must be an integer between 0 and {MAX_SEED}"
HINTS = {
    "seed": f"seed {_SEED_MSG}",
    "from": f"from {_SEED_MSG}",
    "to": f"to {_SEED_MSG}",
    "n": f"n must be an integer between 1 and {MAX_GRID}",
    "frames": f"frames must be an integer between {MIN_FRAMES} and {MAX_FRAMES}",
    "size": f"size must be one of {', '.join(SIZES)}",
    "resample": "resample must be nearest or lanczos",
    "truncation": f"truncation must be 0 (off) or between {MIN_TRUNCATION} and {MAX_TRUNCATION}",
    "method": "method must be slerp or lerp",
    "duration": "duration must be an integer number of milliseconds between 20 and 1000",
    "model": "model must be the name of a loaded model (see /api/models)",
    "edit": "edit must be at most 1,000 characters of NAME:AMOUNT pairs (see /api/models for the names)",
}


def validation_message(exc: RequestValidationError) -> str:
    """One line for FastAPI's validation failure: the first bad parameter's HINTS entry."""
    errors = exc.errors()
    if not errors:
        return "invalid request"
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body")]
    name = loc[-1] if loc else "request"
    if first.get("type") == "missing":
        return f"{name} is required"
    return HINTS.get(name, f"{name}: {first.get('msg', 'invalid value')}")


def truncation_arg(value: float) -> float | None:
    """The API's `truncation` (0 = off) as `facegan.sampling.generate.latents` takes it (None = off)."""
    if value == 0:
        return None
    if value < MIN_TRUNCATION:  # tiny values would redraw nearly every component, for no visible gain
        raise HTTPException(422, HINTS["truncation"])
    return value


def edit_arg(directions: Directions | None, text: str | None) -> tuple[dict[str, float], str]:
    """The `edit` parameter checked against a model's directions: ({name: amount}, its canonical form
    for ETags: sorted, zero amounts dropped, since they leave the face unchanged). HTTP 400 with one
    line naming the valid choices for an unknown name, a bad or out-of-range amount, or a model
    without edits."""
    from facegan.sampling.directions import parse_edits

    if not text:
        return {}, ""
    try:
        edits = parse_edits(text, directions)
    except FaceganError as err:
        raise HTTPException(400, str(err)) from None
    canonical = ",".join(f"{k}:{v!r}" for k, v in sorted(edits.items()) if v != 0.0)
    return edits, canonical


def random_seed() -> int:
    return secrets.randbelow(RANDOM_SEED_BOUND)


def side(size: str, native: int) -> int:
    """The output side in pixels of a `size` parameter for a `native` px generator."""
    return native if size == "native" else int(size)
