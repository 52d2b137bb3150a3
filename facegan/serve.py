""""This face does not exist": a small web app and JSON/image API over one or more generators.

Routes (all GET, and HEAD wherever GET works):
  /                     HTML page: a random face per load, `?seed=` permalinks, `?model=` switch
  /api/face.png         one face               seed, model, size, resample
  /api/grid.png         faces seed…seed+n-1    n, seed, model
  /api/interpolate.gif  latent walk            from, to, frames, method, size, resample, duration,
                                               model
  /api/models           loaded models (JSON)
  /healthz              {"ok": true, ...}
  /openapi.json         FastAPI's schema (the /docs UI is off: it loads from a CDN)

Every parameter is bounded; a bad one is answered with a 4xx and a one-line `{"error": "..."}`
body, and any unexpected failure with a generic 500 of the same shape, never a stack trace. A seed
names one face of a model, so a seeded image is byte-for-byte reproducible. Generators are loaded
once; each has one thread that runs all its forward passes, batching concurrent requests (a torch
module is not safe to call from several threads at once), and images are encoded in worker
threads, so the event loop keeps answering while faces are being drawn.

Limits (facegan.serve_limits, facegan.serve_conn): a per-process cost budget admits image work,
globally and per client, answering 429 with Retry-After when it is spent; slow or stalled connections
are timed out and one address may hold only so many. Seeded images are cacheable forever, with an
ETag naming the model's weights (facegan.serve_cache). `--workers N` runs N such processes on one
port.
"""

from __future__ import annotations

import asyncio
import html
import io
import ipaddress
import json
import logging
import math
import os
import queue
import re
import secrets
import socket
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlencode

import anyio
import anyio.to_thread
import torch
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facegan import __version__
from facegan.errors import FaceganError
from facegan.generate import (
    MAX_SEED,
    grid,
    latents,
    load_generator,
    pil_from_unit,
    resize,
    to_pil,
    walk_gif,
    walk_latents,
)
from facegan.models import Generator
from facegan.serve_cache import IMMUTABLE, etag, model_version, not_modified
from facegan.serve_limits import CostBudget, OverBudget, ServeLimits, client_key, image_cost

log = logging.getLogger("facegan.serve")

MAX_GRID = 64
MIN_FRAMES, MAX_FRAMES = 2, 60
SIZES = ("native", "32", "64", "128", "256", "512")
# Random seeds are drawn below 2^32 so permalinks stay short; any seed up to MAX_SEED is accepted.
RANDOM_SEED_BOUND = 2**32
DISPLAY_SIZE = "512"  # the page's face: a power of two, so NEAREST upscaling is an integer factor
WALK_SIZE = "256"
ENCODE_THREADS = 8  # PNG/GIF encoding in parallel; generation has its own thread per model
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

SizeName = Literal["native", "32", "64", "128", "256", "512"]
Resample = Literal["nearest", "lanczos"]
Method = Literal["slerp", "lerp"]

# Query parameter types shared by the routes; module level because FastAPI resolves the (string)
# annotations against the module's globals.
SeedQ = Annotated[int | None, Query(ge=0, le=MAX_SEED, description="face number; omit for random")]
ModelQ = Annotated[str | None, Query(max_length=64, description="a loaded model; default: first")]
SizeQ = Annotated[SizeName, Query(description="output width/height in px, or native")]
ResampleQ = Annotated[Resample, Query(description="upscaling filter (shrinking uses lanczos)")]
# The page's and the API's "variety": latent components beyond ±t are redrawn (see
# facegan.generate.latents); 0 = the full distribution. The default is measured (README "Variety"):
# on the shipped celeba64, precision peaks at t = 1.5 (0.972, from 0.928 untruncated) and no smaller t
# makes faces cleaner, only more alike (recall 0.41 at 1.5, 0.19 at 1.0).
DEFAULT_TRUNCATION = 1.5
MIN_TRUNCATION, MAX_TRUNCATION = 0.2, 4.0
TRUNCATION_CHOICES = ((1.0, "low"), (DEFAULT_TRUNCATION, "balanced"), (2.0, "high"), (0.0, "full"))
TruncQ = Annotated[float, Query(ge=0, le=MAX_TRUNCATION,
                                description=f"variety: redraw latent components beyond this magnitude "
                                            f"({MIN_TRUNCATION}-{MAX_TRUNCATION}); 0 = the full "
                                            f"distribution")]

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
}

T = TypeVar("T")


# ----------------------------------------------------------------------------- models and images


class GeneratorWorker:
    """The one thread that ever calls a given generator, batching the requests that queue up.

    A torch module must not be called from several threads at once, so every forward pass goes
    through this thread. Requests that arrive while a pass runs are served together by the next
    one, which costs little more than a single face (on 2 CPU cores a 64 px DCGAN serves about
    twice the faces per second it does one at a time). Every pass runs exactly BATCH latents,
    padded with zeros: kernels may round differently for different batch sizes, and a fixed shape
    keeps a seed's pixels byte-identical whether it was drawn alone, among other requests, in a
    grid or in a walk.
    """

    BATCH = 8

    def __init__(self, g: Generator, name: str) -> None:
        self.g = g
        self.device = next(g.parameters()).device
        self._jobs: queue.SimpleQueue[tuple[torch.Tensor, Future[torch.Tensor]] | None] = (
            queue.SimpleQueue())
        self._thread = threading.Thread(target=self._run, name=f"facegan-g-{name}", daemon=True)
        self._thread.start()

    def submit(self, z: torch.Tensor) -> Future[torch.Tensor]:
        """G(z) for latents (N, nz, 1, 1), eventually: (N, 3, S, S) in [-1, 1] on the CPU."""
        fut: Future[torch.Tensor] = Future()
        self._jobs.put((z, fut))
        return fut

    def stop(self) -> None:
        self._jobs.put(None)

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            jobs, stop = batch
            if jobs:
                try:
                    out = self._forward(torch.cat([z for z, _ in jobs]))
                except BaseException as err:  # the waiting requests report it; the thread lives on
                    for _, fut in jobs:
                        fut.set_exception(err)
                else:
                    parts = out.split([len(z) for z, _ in jobs])
                    for (_, fut), part in zip(jobs, parts, strict=True):
                        fut.set_result(part)
            if stop:
                return

    def _next_batch(self) -> tuple[list[tuple[torch.Tensor, Future[torch.Tensor]]], bool] | None:
        """Block for one job, then take whatever else already waits, up to about one BATCH; never
        wait for more. Jobs whose request has gone away (cancelled) are dropped. None: stop now."""
        job = self._jobs.get()
        if job is None:
            return None
        waiting, count, stop = [job], len(job[0]), False
        while count < self.BATCH:
            try:
                nxt = self._jobs.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                stop = True
                break
            waiting.append(nxt)
            count += len(nxt[0])
        # From here on a future cannot be cancelled, so set_result below cannot fail.
        jobs = [(z, fut) for z, fut in waiting if fut.set_running_or_notify_cancel()]
        return jobs, stop

    def _forward(self, z: torch.Tensor) -> torch.Tensor:
        n = len(z)
        pad = -n % self.BATCH
        if pad:
            z = torch.cat([z, z.new_zeros(pad, *z.shape[1:])])
        with torch.inference_mode():
            out = [self.g(chunk.to(self.device)).float().cpu() for chunk in z.split(self.BATCH)]
        return torch.cat(out)[:n]


@dataclass
class ServedModel:
    """One loaded generator, the worker that runs it, and where it came from."""

    name: str
    g: Generator
    source: str
    worker: GeneratorWorker = field(init=False)
    # Changes whenever the weights, or anything else that shapes the pixels, do; part of every ETag.
    version: str = field(init=False)

    def __post_init__(self) -> None:
        self.version = model_version(self.g)
        self.worker = GeneratorWorker(self.g, self.name)

    @property
    def size(self) -> int:
        return self.g.cfg.size

    @property
    def latent_dim(self) -> int:
        return self.g.cfg.latent_dim

    async def decode(self, z: torch.Tensor) -> torch.Tensor:
        """G(z) without blocking the event loop: (N, 3, S, S) in [-1, 1] on the CPU."""
        return await asyncio.wrap_future(self.worker.submit(z))

    async def faces(self, seeds: list[int], truncation: float | None = None) -> torch.Tensor:
        """The faces named by `seeds` (latents exactly as in `facegan.generate`)."""
        return await self.decode(latents(seeds, self.latent_dim, truncation))

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "latent_dim": self.latent_dim,
                "source": self.source}


def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")  # PIL writes no timestamp, so equal pixels give equal bytes
    return buf.getvalue()


def face_png(img: torch.Tensor, size: str, resample: str) -> bytes:
    return png_bytes(resize(to_pil(img), size, resample))


def grid_png(images: torch.Tensor) -> bytes:
    return png_bytes(pil_from_unit(grid(images, nrow=math.ceil(math.sqrt(len(images))))))


# ----------------------------------------------------------------------------- the app


def random_seed() -> int:
    return secrets.randbelow(RANDOM_SEED_BOUND)


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' → CUDA when available, else CPU; an explicit CUDA request without CUDA is an error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise FaceganError(f"unknown device {device!r}; use auto, cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FaceganError(f"device {device!r} asked for, but this machine has no usable CUDA GPU; "
                           f"use --device cpu or auto")
    if dev.type not in ("cpu", "cuda"):
        raise FaceganError(f"unsupported device {device!r}; use auto, cpu or cuda")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise FaceganError(f"device {device!r} asked for, but this machine has only "
                           f"{torch.cuda.device_count()} CUDA GPU(s)")
    return dev


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise FaceganError(f"bad model name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
                           f"starting with a letter or digit")
    return name


class _Server:
    """Shared state of one app: the models, the cost budget and the limiter for CPU-heavy work."""

    def __init__(self, models: dict[str, ServedModel], budget: CostBudget) -> None:
        self.models = models
        self.default = next(iter(models))
        self.budget = budget
        self._limiter: anyio.CapacityLimiter | None = None

    def admit(self, request: Request, cost: float) -> AbstractAsyncContextManager[None]:
        """Hold `cost` (Mpx) of the budget for this request's client; OverBudget (→ 429) if refused.
        Behind a trusted proxy the client is X-Forwarded-For's, as uvicorn rewrote it."""
        host = request.client.host if request.client else None
        return self.budget.admit(client_key(host), cost)

    def pick(self, name: str | None) -> ServedModel:
        if name is None:
            return self.models[self.default]
        if name not in self.models:
            loaded = ", ".join(self.models)
            raise HTTPException(404, f"unknown model {name[:64]!r}; loaded: {loaded}")
        return self.models[name]

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking work (image encoding) in a worker thread. Its own limiter (made lazily, as
        it needs the running loop) keeps a flood of GIF requests from taking every thread anyio
        has."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(ENCODE_THREADS)
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    def stop(self) -> None:
        for m in self.models.values():
            m.worker.stop()


class _HeadAsGet:
    """Pure-ASGI middleware answering HEAD wherever GET works: the app sees a GET, and the server
    (which knows the request was a HEAD) sends the headers, Content-Length included, without the
    body. One middleware rather than a HEAD route per GET route keeps /openapi.json free of
    duplicate operations."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "HEAD":
            scope = {**scope, "method": "GET"}
        await self.app(scope, receive, send)


class _SecurityHeaders:
    """Pure-ASGI middleware adding headers every response should carry."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")
                headers.setdefault("X-Frame-Options", "DENY")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _error(request: Request, status: int, message: str) -> Response:
    """The one error shape: JSON `{"error": "..."}` for the API, a tiny HTML page for `/`."""
    message = " ".join(message.split())  # one line, whatever the source
    if request.url.path == "/":
        body = (f"<!doctype html><meta charset=utf-8><title>facegan: error</title>"
                f"<p>{html.escape(message)}</p><p><a href=\"/\">Show a random face</a></p>")
        return HTMLResponse(body, status_code=status)
    return JSONResponse({"error": message}, status_code=status)


def _validation_message(exc: RequestValidationError) -> str:
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
    """The API's `truncation` (0 = off) as `facegan.generate.latents` takes it (None = off)."""
    if value == 0:
        return None
    if value < MIN_TRUNCATION:  # tiny values would redraw nearly every component, for no visible gain
        raise HTTPException(422, HINTS["truncation"])
    return value


def _image(data: bytes | None, media_type: str, seed: int | None = None, tag: str | None = None
           ) -> Response:
    """An image response; `tag` (the ETag of a seeded image) makes it cacheable forever, without one
    it is a random face that must not be cached. `data` None: 304 Not Modified."""
    headers = {"Cache-Control": IMMUTABLE if tag else "no-store"}
    if tag:
        headers["ETag"] = tag
    if seed is not None:
        headers["X-Seed"] = str(seed)
    if data is None:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=media_type, headers=headers)


def _cached(request: Request, tag: str) -> bool:
    """Whether the client (or a cache) already holds the image `tag` names."""
    return not_modified(request.headers.get("if-none-match"), tag)


def _side(size: str, native: int) -> int:
    return native if size == "native" else int(size)


def build_app(generators: dict[str, Generator], device: torch.device | str = "cpu", *,
              sources: dict[str, str] | None = None, budget: CostBudget | None = None) -> FastAPI:
    """The web app serving `generators` (name → G). They are moved to `device` and put in eval
    mode; `sources` (name → where it was loaded from) is shown by /api/models as a file name only
    (the server's directory layout is none of the client's business). `budget` admits the image
    work (default: ServeLimits' defaults)."""
    if not generators:
        raise FaceganError("no models to serve; give at least one --checkpoint or --pretrained")
    dev = resolve_device(device)
    sources = sources or {}
    models = {
        check_name(name): ServedModel(name, g.to(dev).eval(), Path(sources.get(name, name)).name)
        for name, g in generators.items()
    }
    state = _Server(models, budget or ServeLimits().budget())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        state.stop()  # let the generator threads finish their last batch and end

    app = FastAPI(title="facegan", version=__version__, docs_url=None, redoc_url=None,
                  lifespan=lifespan,
                  description="This face does not exist: faces from DCGAN generators, by seed.")
    app.add_middleware(_SecurityHeaders)
    app.add_middleware(_HeadAsGet)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        response = _error(request, exc.status_code, str(exc.detail))
        response.headers.update(exc.headers or {})  # e.g. a 405's Allow
        return response

    @app.exception_handler(OverBudget)
    async def over_budget(request: Request, exc: OverBudget) -> Response:
        response = _error(request, 429, str(exc))
        response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return _error(request, 422, _validation_message(exc))

    @app.exception_handler(FaceganError)
    async def facegan_error(request: Request, exc: FaceganError) -> Response:
        return _error(request, 400, str(exc))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        # The trace goes to the server log only; the client learns nothing about the internals.
        log.error("unhandled error on %s", request.url.path, exc_info=exc)
        return _error(request, 500, "internal server error")

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"ok": True, "models": len(models)}

    @app.get("/api/models")
    async def list_models() -> list[dict[str, Any]]:
        return [m.info() for m in models.values()]

    @app.get("/api/face.png", response_class=Response,
             responses={200: {"content": {"image/png": {}}, "description": "one face; X-Seed"}})
    async def face(request: Request, seed: SeedQ = None, model: ModelQ = None, size: SizeQ = "native",
                   resample: ResampleQ = "nearest", truncation: TruncQ = DEFAULT_TRUNCATION) -> Response:
        m = state.pick(model)
        trunc = truncation_arg(truncation)
        tag = None if seed is None else etag(m.version, "face", seed, size, resample, float(truncation))
        if tag and _cached(request, tag):
            return _image(None, "image/png", seed, tag)
        chosen = random_seed() if seed is None else seed
        async with state.admit(request, image_cost(1, _side(size, m.size), m.size)):
            img = (await m.faces([chosen], trunc))[0]
            data = await state.call(face_png, img, size, resample)
        return _image(data, "image/png", chosen, tag)

    @app.get("/api/grid.png", response_class=Response,
             responses={200: {"content": {"image/png": {}}, "description": "faces seed…seed+n-1"}})
    async def grid_route(request: Request, n: Annotated[int, Query(ge=1, le=MAX_GRID)] = 16,
                         seed: SeedQ = None, model: ModelQ = None,
                         truncation: TruncQ = DEFAULT_TRUNCATION) -> Response:
        m = state.pick(model)
        trunc = truncation_arg(truncation)
        chosen = random_seed() if seed is None else seed
        if chosen + n - 1 > MAX_SEED:
            raise HTTPException(400, f"seed + n - 1 must not exceed {MAX_SEED}")
        tag = None if seed is None else etag(m.version, "grid", seed, n, float(truncation))
        if tag and _cached(request, tag):
            return _image(None, "image/png", seed, tag)
        async with state.admit(request, image_cost(n, m.size + 2, m.size)):  # 2 px of padding
            images = await m.faces(list(range(chosen, chosen + n)), trunc)
            data = await state.call(grid_png, images)
        return _image(data, "image/png", chosen, tag)

    @app.get("/api/interpolate.gif", response_class=Response,
             responses={200: {"content": {"image/gif": {}}, "description": "animated latent walk"}})
    async def interpolate(
        request: Request,
        start: Annotated[int, Query(alias="from", ge=0, le=MAX_SEED)],
        end: Annotated[int, Query(alias="to", ge=0, le=MAX_SEED)],
        frames: Annotated[int, Query(ge=MIN_FRAMES, le=MAX_FRAMES)] = 24,
        method: Method = "slerp",
        size: SizeQ = "native",
        resample: ResampleQ = "nearest",
        duration: Annotated[int, Query(ge=20, le=1000, description="ms per frame")] = 80,
        model: ModelQ = None,
        truncation: TruncQ = DEFAULT_TRUNCATION,
    ) -> Response:
        m = state.pick(model)
        trunc = truncation_arg(truncation)
        tag = etag(m.version, "walk", start, end, frames, method, size, resample, duration, float(truncation))
        if _cached(request, tag):
            return _image(None, "image/gif", tag=tag)
        async with state.admit(request, image_cost(frames, _side(size, m.size), m.size)):
            za, zb = latents([start, end], m.latent_dim, trunc)
            images = await m.decode(walk_latents(za, zb, frames, method))
            data = await state.call(walk_gif, images, size, resample, duration)
        return _image(data, "image/gif", tag=tag)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page(seed: SeedQ = None, model: ModelQ = None, truncation: TruncQ = DEFAULT_TRUNCATION,
                   resample: ResampleQ = "lanczos") -> Response:
        m = state.pick(model)
        truncation_arg(truncation)
        chosen = random_seed() if seed is None else seed
        nonce = secrets.token_urlsafe(16)
        csp = (f"default-src 'none'; img-src 'self' blob:; connect-src 'self' blob:; "
               f"script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; form-action 'self'; "
               f"base-uri 'none'; frame-ancestors 'none'")
        body = render_page(list(models.values()), m, chosen, nonce, truncation, resample)
        headers = {"Content-Security-Policy": csp, "Cache-Control": "no-store"}
        return HTMLResponse(body, headers=headers)

    return app


# ----------------------------------------------------------------------------- the page


def render_page(models: list[ServedModel], current: ServedModel, seed: int, nonce: str,
                truncation: float = DEFAULT_TRUNCATION, resample: str = "lanczos") -> str:
    """The HTML of `/` for face `seed` of `current` at the given variety (truncation, 0 = off) and
    upscaling filter; every interpolated value is escaped."""
    multi = len(models) > 1

    def q(**params: Any) -> str:
        return html.escape(urlencode(params))

    trunc = f"{truncation:g}"
    look = {"truncation": trunc}
    # The permalink names what differs from the defaults, so it shows exactly this face.
    model_q = {"model": current.name} if multi else {}
    page_extra = {**({"truncation": trunc} if truncation != DEFAULT_TRUNCATION else {}),
                  **({"resample": resample} if resample != "lanczos" else {})}
    choices = list(TRUNCATION_CHOICES)
    if all(value != truncation for value, _ in choices):
        choices.append((truncation, "custom"))
    variety = "".join(
        f'<option value="{value:g}"{" selected" if value == truncation else ""}>'
        f'{label} ({"off" if value == 0 else f"{value:g}"})</option>' for value, label in choices)
    upscale = "".join(
        f'<option value="{value}"{" selected" if value == resample else ""}>{label}</option>'
        for value, label in (("lanczos", "smooth (Lanczos)"), ("nearest", "crisp pixels")))
    options = "".join(
        f'<option value="{html.escape(m.name)}"{" selected" if m is current else ""}>'
        f"{html.escape(m.name)} ({m.size}px)</option>" for m in models)
    switcher = (
        f'<form id="model-form" method="get" action="/"><label>Model '
        f'<select id="model" name="model">{options}</select></label>'
        f'<noscript><button type="submit">Switch</button></noscript></form>'
        if multi
        else f'<span id="model-name">{html.escape(current.name)} ({current.size}px)</span>')
    values = {
        "nonce": nonce,
        "model": html.escape(current.name),
        "multi": "1" if multi else "",
        "display": DISPLAY_SIZE,
        "walk_size": WALK_SIZE,
        "seed": str(seed),
        "next_seed": str(seed + 1 if seed < MAX_SEED else seed - 1),
        "max_frames": str(MAX_FRAMES),
        "face_q": q(seed=seed, model=current.name, size=DISPLAY_SIZE, resample=resample, **look),
        "png_q": q(seed=seed, model=current.name, **look),
        "icon_q": q(seed=seed, model=current.name, size="32", **look),
        "grid_q": q(n=16, seed=seed, model=current.name, **look),
        "page_q": q(seed=seed, **model_q, **page_extra),
        "new_q": q(**model_q, **page_extra),
        "truncation": trunc,
        "resample": resample,
        "face_class": "crisp" if resample == "nearest" else "smooth",
        "upscale_note": html.escape(upscale_note(current.size, resample)),
        "variety_options": variety,
        "upscale_options": upscale,
        "switcher": switcher,
        "native": str(current.size),
        "default_truncation": f"{DEFAULT_TRUNCATION:g}",
    }
    return re.sub(r"\{\{(\w+)\}\}", lambda mt: values[mt.group(1)], PAGE)


def upscale_note(native: int, resample: str) -> str:
    """The page's line saying how the face on screen was made from the generator's pixels."""
    how = "smooth Lanczos upscaling" if resample == "lanczos" else "crisp pixels (nearest neighbour)"
    return f"{native}×{native} px face shown at {DISPLAY_SIZE} px with {how}"


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>This face does not exist</title>
<link rel="icon" type="image/png" href="/api/face.png?{{icon_q}}">
<style nonce="{{nonce}}">
  :root { color-scheme: dark; --bg: #14161a; --card: #1e2127; --fg: #e8e8ea; --dim: #9aa0aa;
          --accent: #6ea8fe; }
  * { box-sizing: border-box; }
  body { margin: 0; background: var(--bg); color: var(--fg);
         font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
  main { max-width: 560px; margin: 0 auto; padding: 24px 16px 48px; text-align: center; }
  h1 { font-size: 1.6rem; margin: 0 0 4px; letter-spacing: .01em; }
  .sub { color: var(--dim); margin: 0 0 18px; font-size: .95rem; }
  .frame { background: var(--card); border-radius: 14px; padding: 12px;
           box-shadow: 0 8px 30px rgba(0,0,0,.35); }
  #face, #walk { display: block; width: 512px; max-width: 100%; height: auto; margin: 0 auto;
                 border-radius: 8px; background: #000; aspect-ratio: 1; }
  #face.crisp, #walk.crisp { image-rendering: pixelated; }
  #walk { width: 256px; }
  #walk[hidden] { display: none; }  /* no empty frame or broken-image icon before the first walk */
  .note { color: var(--dim); font-size: .85rem; margin: 6px 0 0; }
  .row { display: flex; gap: 10px; justify-content: center; align-items: center; flex-wrap: wrap;
         margin: 14px 0 0; }
  .meta { color: var(--dim); font-size: .95rem; }
  #seed { color: var(--fg); font-family: ui-monospace, Menlo, Consolas, monospace; }
  a { color: var(--accent); }
  button, .button { font: inherit; color: #0b1220; background: var(--accent); border: 0;
                    border-radius: 8px; padding: 8px 18px; cursor: pointer; text-decoration: none;
                    font-weight: 600; }
  button:disabled { opacity: .6; cursor: progress; }
  input, select { font: inherit; background: #111318; color: var(--fg); border: 1px solid #3a3f48;
                  border-radius: 6px; padding: 5px 8px; }
  input.seed { width: 8.5em; font-family: ui-monospace, Menlo, Consolas, monospace; }
  input.frames { width: 4.5em; }
  h2 { font-size: 1.1rem; margin: 32px 0 8px; }
  #status { min-height: 1.5em; color: #f3a0a0; margin: 8px 0 0; }
  footer { color: var(--dim); font-size: .85rem; margin-top: 32px; }
</style>
</head>
<body data-model="{{model}}" data-multi="{{multi}}" data-size="{{display}}"
      data-walk-size="{{walk_size}}" data-native="{{native}}"
      data-default-truncation="{{default_truncation}}">
<main>
  <h1>This face does not exist</h1>
  <p class="sub">Drawn by a GAN from a single number. Reload for another.</p>
  <div class="frame">
    <img id="face" class="{{face_class}}" src="/api/face.png?{{face_q}}" width="512" height="512"
         alt="A generated face">
    <p id="upscale-note" class="note">{{upscale_note}}</p>
  </div>
  <div class="row">
    <a id="new-face" class="button" href="/?{{new_q}}" role="button">New face</a>
    {{switcher}}
  </div>
  <form id="look-form" class="row" method="get" action="/">
    <input type="hidden" name="seed" value="{{seed}}">
    <input type="hidden" name="model" value="{{model}}">
    <label title="how far from the average face latents may go: lower = cleaner, less varied faces">
      Variety <select id="variety" name="truncation">{{variety_options}}</select></label>
    <label>Upscaling <select id="upscale" name="resample">{{upscale_options}}</select></label>
    <noscript><button type="submit">Apply</button></noscript>
  </form>
  <p class="row meta">
    <span>seed <span id="seed">{{seed}}</span></span>
    <a id="permalink" href="/?{{page_q}}">permalink</a>
    <a id="download" href="/api/face.png?{{png_q}}" download>PNG ({{native}}px)</a>
    <a id="grid-link" href="/api/grid.png?{{grid_q}}">16 neighbours</a>
  </p>
  <p id="status" role="status"></p>

  <h2>Latent walk</h2>
  <form id="walk-form" class="row" method="get" action="/api/interpolate.gif">
    <label>from <input id="walk-from" class="seed" name="from" value="{{seed}}" required
           inputmode="numeric" pattern="[0-9]{1,19}"></label>
    <label>to <input id="walk-to" class="seed" name="to" value="{{next_seed}}" required
           inputmode="numeric" pattern="[0-9]{1,19}"></label>
    <label>frames <input id="walk-frames" class="frames" name="frames" type="number" min="2"
           max="{{max_frames}}" value="24" required></label>
    <input type="hidden" name="model" value="{{model}}">
    <input type="hidden" name="size" value="{{walk_size}}">
    <input type="hidden" name="truncation" value="{{truncation}}">
    <input type="hidden" name="resample" value="{{resample}}">
    <button id="walk-go" type="submit">Walk</button>
  </form>
  <div class="row"><img id="walk" class="{{face_class}}" alt="Latent walk between two faces"
       width="256" height="256" hidden></div>

  <footer>facegan · every face is G(z), z drawn from its seed ·
    <a href="/api/models">models</a> · <a href="/openapi.json">API</a></footer>
</main>
<script nonce="{{nonce}}">
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const data = document.body.dataset;
  const face = $("face"), seedEl = $("seed"), status = $("status"), newFace = $("new-face");
  let objectUrl = null;

  const qs = (params) => new URLSearchParams(params).toString();
  const modelParam = () => (data.multi ? { model: data.model } : {});
  const variety = $("variety"), upscale = $("upscale");
  const look = () => ({ truncation: variety.value });
  // What the permalink must name to show this exact face: anything not at its default.
  const pageParams = () => ({
    ...modelParam(),
    ...(Number(variety.value) !== Number(data.defaultTruncation) ? look() : {}),
    ...(upscale.value !== "lanczos" ? { resample: upscale.value } : {}),
  });
  const faceUrl = (seed) => "/api/face.png?" + qs({
    ...(seed === null ? {} : { seed }), model: data.model, size: data.size, resample: upscale.value,
    ...look() });

  function showSeed(seed) {
    seedEl.textContent = seed;
    $("permalink").href = "/?" + qs({ seed, ...pageParams() });
    $("download").href = "/api/face.png?" + qs({ seed, model: data.model, ...look() });
    $("grid-link").href = "/api/grid.png?" + qs({ n: 16, seed, model: data.model, ...look() });
    $("walk-from").value = seed;
  }

  // Swap in the face of `seed` (null: a new random one) as the current look; returns its seed.
  async function loadFace(seed) {
    const resp = await fetch(faceUrl(seed), { cache: "no-store" });
    if (!resp.ok) throw new Error(await errorText(resp));
    const url = URL.createObjectURL(await resp.blob());
    face.src = url;
    await face.decode();  // swap the seed text only once the new face is on screen
    if (objectUrl) URL.revokeObjectURL(objectUrl);
    objectUrl = url;
    const crisp = upscale.value === "nearest";
    face.className = $("walk").className = crisp ? "crisp" : "smooth";
    $("upscale-note").textContent = data.native + "×" + data.native + " px face shown at " + data.size +
      " px with " + (crisp ? "crisp pixels (nearest neighbour)" : "smooth Lanczos upscaling");
    return resp.headers.get("X-Seed");
  }

  async function errorText(resp) {
    try { return (await resp.json()).error || resp.statusText; } catch { return resp.statusText; }
  }

  // New face without a page load: the server picks the seed and names it in X-Seed.
  newFace.addEventListener("click", async (ev) => {
    ev.preventDefault();
    if (newFace.getAttribute("aria-busy") === "true") return;
    newFace.setAttribute("aria-busy", "true");
    status.textContent = "";
    try {
      const seed = await loadFace(null);  // the server picks the seed and names it in X-Seed
      showSeed(seed);
      history.pushState({ seed }, "", "/?" + qs({ seed, ...pageParams() }));
    } catch (err) {
      status.textContent = "Could not draw a face: " + err.message;
    } finally {
      newFace.removeAttribute("aria-busy");
    }
  });

  // Variety and upscaling redraw the same seed in place and keep the permalink exact.
  for (const control of [variety, upscale]) {
    control.addEventListener("change", async () => {
      status.textContent = "";
      const seed = seedEl.textContent;
      try {
        await loadFace(seed);
        showSeed(seed);
        history.replaceState({ seed }, "", "/?" + qs({ seed, ...pageParams() }));
      } catch (err) {
        status.textContent = "Could not redraw the face: " + err.message;
      }
    });
  }
  // Back/forward land on a permalink URL; let the server render that face.
  window.addEventListener("popstate", () => location.reload());

  const modelSelect = $("model");
  if (modelSelect) modelSelect.addEventListener("change", () => $("model-form").submit());

  const walk = $("walk");
  $("walk-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    status.textContent = "";
    const url = "/api/interpolate.gif?" + qs({
      from: $("walk-from").value.trim(), to: $("walk-to").value.trim(),
      frames: $("walk-frames").value, model: data.model, size: data.walkSize,
      resample: upscale.value, ...look(),
    });
    $("walk-go").disabled = true;
    try {
      const resp = await fetch(url);
      if (!resp.ok) throw new Error(await errorText(resp));
      if (walk.src.startsWith("blob:")) URL.revokeObjectURL(walk.src);
      walk.src = URL.createObjectURL(await resp.blob());
      walk.hidden = false;
    } catch (err) {
      status.textContent = "Could not walk: " + err.message;
    } finally {
      $("walk-go").disabled = false;
    }
  });
})();
</script>
</body>
</html>
"""


# ----------------------------------------------------------------------------- running it


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket, so a busy port is one clear error before anything starts."""
    if not 0 <= port <= 65535:
        raise FaceganError(f"--port must be between 0 and 65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise FaceganError(f"cannot listen on host {host!r}: {err.strerror}") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
        sock.listen(2048)
    except OSError as err:
        sock.close()
        hint = "; pick another with --port" if err.errno in (98, 48) else ""
        raise FaceganError(f"cannot listen on {host}:{port}: {err.strerror or err}{hint}") from None
    sock.set_inheritable(True)
    return sock


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


WORKER_ENV = "FACEGAN_SERVE_WORKER"  # how `--workers` processes learn what to load
LIMIT_CONCURRENCY = 256  # open connections per process beyond which uvicorn answers a quick 503
GRACEFUL_SHUTDOWN_S = 10  # on SIGTERM/SIGINT, requests in flight get this long to finish


def serve(sources: dict[str, str], host: str = "127.0.0.1", port: int = 8000,
          device: str = "auto", amp: str = "auto", *, workers: int = 1,
          limits: ServeLimits | None = None) -> None:
    """Load every model in `sources` (name → checkpoint .pt, run folder or exported .safetensors)
    once, then serve them on http://host:port/ until interrupted; `workers` processes share the port,
    each with its own copy of the generators and its own `limits`."""
    import uvicorn  # here, so importing this module for build_app does not need the server

    from facegan.serve_conn import GuardedConfig

    limits = limits or ServeLimits()
    if not sources:
        raise FaceganError("no models to serve; give at least one --checkpoint or --pretrained")
    if workers < 1:
        raise FaceganError(f"--workers must be at least 1, got {workers}")
    for name in sources:
        check_name(name)
    dev = resolve_device(device)
    # Loaded here even when workers will load their own: a bad checkpoint is one clear error
    # before anything starts, not a worker dying at startup.
    generators = {name: load_generator(path, dev, amp=amp) for name, path in sources.items()}
    sources = {k: str(v) for k, v in sources.items()}
    sock = _bind(host, port)
    bound_port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    summary = ", ".join(f"{n} ({g.cfg.size}px)" for n, g in generators.items())
    procs = f", {workers} worker processes" if workers > 1 else ""
    print(f"facegan: serving {summary} on {dev}{procs} at http://{shown}:{bound_port}/ "
          f"(Ctrl-C to stop)", flush=True)
    if not _is_loopback(host):
        print(f"facegan: note: {host} is not a loopback address; anyone who can reach this "
              f"machine can use the server", flush=True)
    # limit_concurrency: beyond that many open connections new requests get a quick 503 instead of
    # queueing without bound; X-Forwarded-For is believed only from --forwarded-allow-ips.
    options: dict[str, Any] = dict(
        log_level="info", access_log=True, server_header=False, limit_concurrency=LIMIT_CONCURRENCY,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S, limits=limits,
        proxy_headers=bool(limits.forwarded_allow_ips),
        forwarded_allow_ips=list(limits.forwarded_allow_ips) or None)
    try:
        if workers == 1:
            app = build_app(generators, dev, sources=sources, budget=limits.budget())
            uvicorn.Server(GuardedConfig(app, **options)).run(sockets=[sock])
        else:
            del generators  # each worker loads its own
            _run_workers(GuardedConfig("facegan.serve:worker_app", factory=True, workers=workers,
                                       **options),
                         sock, {"sources": sources, "device": str(dev), "amp": amp, "workers": workers,
                                "limits": asdict(limits)})
    finally:
        sock.close()


def _run_workers(config: Any, sock: socket.socket, spec: dict[str, Any]) -> None:
    """Run `config.workers` server processes on the one listening socket `sock`.

    uvicorn's own supervisor does the work: it starts each worker with multiprocessing's spawn (a
    fresh interpreter: torch and its thread pools do not survive fork), hands it `sock` (so all
    accept on one port and the kernel spreads the connections, no SO_REUSEPORT needed), restarts a
    worker that dies, and on SIGINT/SIGTERM stops them all. It builds the app in each worker from
    an import string only, hence the factory `worker_app`, which reads what to load from the
    environment the workers inherit."""
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    os.environ[WORKER_ENV] = json.dumps(spec)
    supervisor = Multiprocess(config, sockets=[sock])
    supervisor.run()
    if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
        raise FaceganError("a worker process failed to start; see the log above")


def worker_app() -> FastAPI:
    """The app of one `--workers` process (uvicorn calls this factory in each worker)."""
    spec = json.loads(os.environ[WORKER_ENV])
    if "OMP_NUM_THREADS" not in os.environ:
        # N processes with a thread per core each would oversubscribe the CPU N times over.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // spec["workers"]))
    raw = spec["limits"]
    limits = ServeLimits(**{**raw, "forwarded_allow_ips": tuple(raw["forwarded_allow_ips"])})
    dev = torch.device(spec["device"])
    sources: dict[str, str] = spec["sources"]
    generators = {name: load_generator(path, dev, amp=spec["amp"]) for name, path in sources.items()}
    return build_app(generators, dev, sources=sources, budget=limits.budget())
