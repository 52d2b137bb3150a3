"""The routes: the face page and the image API. Each reads the app's shared state (`Server`), admits
its work against the cost budget, and answers a seeded image with an ETag naming the model version."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from starlette.exceptions import HTTPException

from facegan.sampling.generate import MAX_SEED, walk_gif, walk_latents
from facegan.serve.cache import etag
from facegan.serve.limits import image_cost
from facegan.serve.models import Server, face_png, grid_png
from facegan.serve.page import CSP, Page
from facegan.serve.params import (
    DurationQ,
    EditQ,
    FramesQ,
    FromQ,
    GridQ,
    Method,
    ModelQ,
    ResampleQ,
    SeedQ,
    SizeQ,
    ToQ,
    TruncQ,
    edit_arg,
    random_seed,
    side,
    truncation_arg,
)
from facegan.serve.responses import image_response, is_cached


def _server(request: Request) -> Server:
    server: Server = request.app.state.server  # starlette's State holds Any
    return server


def _page(request: Request) -> Page:
    page: Page = request.app.state.page
    return page


ServerDep = Annotated[Server, Depends(_server)]
PageDep = Annotated[Page, Depends(_page)]
# FastAPI's `responses`: the OpenAPI description of each route's image.
Responses = dict[int | str, dict[str, Any]]
PNG: Responses = {200: {"content": {"image/png": {}}, "description": "one face; X-Seed"}}
GRID: Responses = {200: {"content": {"image/png": {}}, "description": "faces seed…seed+n-1"}}
GIF: Responses = {200: {"content": {"image/gif": {}}, "description": "animated latent walk"}}

router = APIRouter()


@router.get("/healthz")
async def healthz(state: ServerDep) -> dict[str, Any]:
    return {"ok": True, "models": len(state.models)}


@router.get("/api/models")
async def list_models(state: ServerDep) -> list[dict[str, Any]]:
    return [m.info() for m in state.models.values()]


@router.get("/api/face.png", response_class=Response, responses=PNG)
async def face(
    request: Request,
    state: ServerDep,
    seed: SeedQ = None,
    model: ModelQ = None,
    size: SizeQ = "native",
    resample: ResampleQ = "nearest",
    truncation: TruncQ = None,
    edit: EditQ = None,
) -> Response:
    m = state.pick(model)
    variety = m.variety(truncation)  # the model's display default if none is given
    trunc = truncation_arg(variety)
    edits, edit_key = edit_arg(m.edits, edit)
    tag = (
        None
        if seed is None
        else etag(m.version, "face", seed, size, resample, float(variety), *([edit_key] if edit_key else []))
    )
    if tag and is_cached(request, tag):
        return image_response(None, "image/png", seed, tag)
    chosen = random_seed() if seed is None else seed
    async with state.admit(request, image_cost(1, side(size, m.size), m.size)):
        img = (await m.faces([chosen], trunc, edits))[0]
        data = await state.call(face_png, img, size, resample)
    return image_response(data, "image/png", chosen, tag)


@router.get("/api/grid.png", response_class=Response, responses=GRID)
async def grid_route(
    request: Request,
    state: ServerDep,
    n: GridQ = 16,
    seed: SeedQ = None,
    model: ModelQ = None,
    truncation: TruncQ = None,
    edit: EditQ = None,
) -> Response:
    m = state.pick(model)
    variety = m.variety(truncation)  # the model's display default if none is given
    trunc = truncation_arg(variety)
    edits, edit_key = edit_arg(m.edits, edit)
    chosen = random_seed() if seed is None else seed
    if chosen + n - 1 > MAX_SEED:
        raise HTTPException(400, f"seed + n - 1 must not exceed {MAX_SEED}")
    tag = (
        None
        if seed is None
        else etag(m.version, "grid", seed, n, float(variety), *([edit_key] if edit_key else []))
    )
    if tag and is_cached(request, tag):
        return image_response(None, "image/png", seed, tag)
    async with state.admit(request, image_cost(n, m.size + 2, m.size)):  # 2 px of padding
        images = await m.faces(list(range(chosen, chosen + n)), trunc, edits)
        data = await state.call(grid_png, images)
    return image_response(data, "image/png", chosen, tag)


@router.get("/api/interpolate.gif", response_class=Response, responses=GIF)
async def interpolate(
    request: Request,
    state: ServerDep,
    start: FromQ,
    end: ToQ,
    frames: FramesQ = 24,
    method: Method = "slerp",
    size: SizeQ = "native",
    resample: ResampleQ = "nearest",
    duration: DurationQ = 80,
    model: ModelQ = None,
    truncation: TruncQ = None,
    edit: EditQ = None,
) -> Response:
    m = state.pick(model)
    variety = m.variety(truncation)  # the model's display default if none is given
    trunc = truncation_arg(variety)
    edits, edit_key = edit_arg(m.edits, edit)
    tag = etag(
        m.version,
        "walk",
        start,
        end,
        frames,
        method,
        size,
        resample,
        duration,
        float(variety),
        *([edit_key] if edit_key else []),
    )
    if is_cached(request, tag):
        return image_response(None, "image/gif", tag=tag)
    async with state.admit(request, image_cost(frames, side(size, m.size), m.size)):
        za, zb = m.latents([start, end], trunc, edits)
        images = await m.decode(walk_latents(za, zb, frames, method))
        data = await state.call(walk_gif, images, size, resample, duration)
    return image_response(data, "image/gif", tag=tag)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page(
    state: ServerDep,
    html: PageDep,
    seed: SeedQ = None,
    model: ModelQ = None,
    truncation: TruncQ = None,
    resample: ResampleQ = "lanczos",
    edit: EditQ = None,
) -> Response:
    m = state.pick(model)
    variety = m.variety(truncation)
    truncation_arg(variety)
    edits, _ = edit_arg(m.edits, edit)
    chosen = random_seed() if seed is None else seed
    body = html.face(list(state.models.values()), m, chosen, variety, resample, edits)
    return HTMLResponse(body, headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store"})
