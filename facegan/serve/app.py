"""The app factory: loaded generators in, a FastAPI app out (routes, static files, middleware,
error handlers). Nothing here starts a server; facegan/serve/run.py does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import torch
from fastapi import FastAPI
from starlette.staticfiles import StaticFiles
from torch import nn

from facegan.errors import FaceganError
from facegan.runtime.device import pick_device
from facegan.serve.config import DEVICES, check_name
from facegan.serve.guard import RequestGuard
from facegan.serve.limits import CostBudget, ServeLimits
from facegan.serve.middleware import HeadAsGet, RelativeRedirects, SecurityHeaders
from facegan.serve.models import ServedModel, Server
from facegan.serve.page import Page, static_dir
from facegan.serve.responses import add_error_handlers
from facegan.serve.routes import router
from facegan.version import __version__


def build_app(
    generators: dict[str, nn.Module],
    device: torch.device | str = "cpu",
    *,
    sources: dict[str, str] | None = None,
    limits: ServeLimits | None = None,
    budget: CostBudget | None = None,
) -> FastAPI:
    """The web app serving `generators` (name → G). They are moved to `device` and put in eval
    mode; `sources` (name → where it was loaded from) is shown by /api/models as a file name only
    (the server's directory layout is none of the client's business). `limits` (default: ServeLimits'
    defaults) set the request guard (facegan/serve/guard.py) and, unless `budget` is given, the budget
    that admits the image work."""
    if not generators:
        raise FaceganError("no models to serve; give at least one --checkpoint or --pretrained")
    dev = pick_device(device, DEVICES)
    sources, limits = sources or {}, limits or ServeLimits()
    models = {
        check_name(name): ServedModel(name, g.to(dev).eval(), Path(sources.get(name, name)).name)
        for name, g in generators.items()
    }
    server = Server(models, budget or limits.budget())
    page = Page()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        server.stop()  # let the generator threads finish their last batch and end

    app = FastAPI(
        title="facegan",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        description="This face does not exist: faces from facegan generators, by seed.",
    )
    app.state.server, app.state.page = server, page  # what the routes read (facegan/serve/routes.py)
    # Outermost last: security headers on every answer, the guard's refusals included.
    app.add_middleware(RelativeRedirects)
    app.add_middleware(HeadAsGet)
    app.add_middleware(RequestGuard, limits=limits)
    app.add_middleware(SecurityHeaders)
    add_error_handlers(app, page)
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=static_dir()), name="static")
    return app
