"""The HTML of the site: facegan/serve/templates/*.html rendered by Jinja2 with autoescaping (every
value is escaped unless a template says otherwise, and none does). The page's CSS and script are
static files (facegan/serve/static/), so its Content-Security-Policy allows no inline code at all."""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any
from urllib.parse import urlencode

import jinja2

from facegan.sampling.generate import MAX_SEED
from facegan.serve.models import ServedModel
from facegan.serve.params import DISPLAY_SIZE, MAX_FRAMES, VARIETY_CHOICES, WALK_SIZE

PACKAGE = "facegan.serve"
STATIC_FILES = ("page.css", "page.js")
# What the page may load: its own images (blob: for faces fetched by the script), script and CSS.
CSP = (
    "default-src 'none'; img-src 'self' blob:; connect-src 'self' blob:; script-src 'self'; "
    "style-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
UPSCALING = (("lanczos", "smooth (Lanczos)"), ("nearest", "crisp pixels"))


def static_dir() -> str:
    """Folder of the page's CSS and script, as installed with the package."""
    return str(resources.files(PACKAGE) / "static")


class Page:
    """The site's templates, loaded once per app."""

    def __init__(self) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader(PACKAGE, "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )  # a missing value is an error
        # The static URLs carry a digest of the files, so a browser never runs an old script after
        # an upgrade, however long it keeps them.
        digest = hashlib.sha256()
        for name in STATIC_FILES:
            digest.update((resources.files(PACKAGE) / "static" / name).read_bytes())
        self.assets = digest.hexdigest()[:12]

    def error(self, message: str) -> str:
        """A minimal page saying what was wrong with a request for `/`."""
        return self.env.get_template("error.html").render(message=message)

    def face(
        self,
        models: list[ServedModel],
        current: ServedModel,
        seed: int,
        truncation: float | None = None,
        resample: str = "lanczos",
        edits: dict[str, float] | None = None,
    ) -> str:
        """The HTML of `/` for face `seed` of `current` at the given variety (truncation, 0 = off; None:
        the model's display default), upscaling filter and attribute edits (checked ones; a slider per
        edit of the model)."""
        multi = len(models) > 1
        default = current.variety(None)
        truncation = current.variety(truncation)
        trunc = f"{truncation:g}"
        edits = edits or {}
        edit_q = edit_text(edits)
        look = {"truncation": trunc, **({"edit": edit_q} if edit_q else {})}
        # The permalink names what differs from the defaults, so it shows exactly this face.
        model_q = {"model": current.name} if multi else {}
        page_extra = {
            **({"truncation": trunc} if truncation != default else {}),
            **({"resample": resample} if resample != "lanczos" else {}),
            **({"edit": edit_q} if edit_q else {}),
        }
        context: dict[str, Any] = {
            "assets": self.assets,
            "models": models,
            "current": current,
            "multi": multi,
            "display": DISPLAY_SIZE,
            "walk_size": WALK_SIZE,
            "seed": seed,
            "next_seed": seed + 1 if seed < MAX_SEED else seed - 1,
            "max_frames": MAX_FRAMES,
            "face_q": urlencode(
                dict(seed=seed, model=current.name, size=DISPLAY_SIZE, resample=resample, **look)
            ),
            "png_q": urlencode(dict(seed=seed, model=current.name, **look)),
            "icon_q": urlencode(dict(seed=seed, model=current.name, size="32", **look)),
            "grid_q": urlencode(dict(n=16, seed=seed, model=current.name, **look)),
            "page_q": urlencode(dict(seed=seed, **model_q, **page_extra)),
            "new_q": urlencode(dict(**model_q, **page_extra)),
            "truncation": trunc,
            "resample": resample,
            "face_class": "crisp" if resample == "nearest" else "smooth",
            "upscale_note": upscale_note(current.size, resample),
            "variety": variety_options(default, truncation),
            "upscaling": [(value, label, value == resample) for value, label in UPSCALING],
            "default_truncation": f"{default:g}",
            "edits": [
                (name, f"{edits.get(name, 0.0):g}", name.replace("_", " "))
                for name in (current.edits.names if current.edits is not None else [])
            ],
        }
        return self.env.get_template("index.html").render(context)


def variety_options(default: float, current: float) -> list[tuple[str, str, bool]]:
    """The Variety menu's (value, label, selected): VARIETY_CHOICES plus the model's display default
    (marked "default"; inserted where it is none of them) and the current value ("custom" where it is
    neither), lowest truncation first and the full distribution (0) last."""
    labels = dict(VARIETY_CHOICES)
    labels.setdefault(default, "")
    labels.setdefault(current, "custom")
    options = []
    for value in sorted(labels, key=lambda v: (v == 0, v)):
        shown = "off" if value == 0 else f"{value:g}"
        label = labels[value] or "default"
        if value == default and labels[value]:
            shown += ", default"
        options.append((f"{value:g}", f"{label} ({shown})", value == current))
    return options


def edit_text(edits: dict[str, float]) -> str:
    """The `edit` query value of the non-zero edits, in the order given ("Smiling:1,Young:-0.5")."""
    return ",".join(f"{name}:{amount:g}" for name, amount in edits.items() if amount != 0.0)


def upscale_note(native: int, resample: str) -> str:
    """The page's line saying how the face on screen was made from the generator's pixels."""
    how = "smooth Lanczos upscaling" if resample == "lanczos" else "crisp pixels (nearest neighbour)"
    return f"{native}×{native} px face shown at {DISPLAY_SIZE} px with {how}"
