"""The app's two kinds of answer besides JSON: images (cacheable forever when seeded) and errors (one
line, whatever went wrong: JSON `{"error": "..."}` for the API, a tiny HTML page for `/`)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException

from facegan.errors import FaceganError
from facegan.serve.cache import IMMUTABLE, not_modified
from facegan.serve.limits import OverBudget
from facegan.serve.page import Page
from facegan.serve.params import validation_message

log = logging.getLogger("facegan.serve")


def image_response(
    data: bytes | None, media_type: str, seed: int | None = None, tag: str | None = None
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


def is_cached(request: Request, tag: str) -> bool:
    """Whether the client (or a cache) already holds the image `tag` names."""
    return not_modified(request.headers.get("if-none-match"), tag)


def add_error_handlers(app: FastAPI, page: Page) -> None:
    """Answer every failure in the one error shape; an unexpected one as a bare 500, its trace
    in the server log only."""

    def error(request: Request, status: int, message: str) -> Response:
        message = " ".join(message.split())  # one line, whatever the source
        if request.url.path == "/":
            return HTMLResponse(page.error(message), status_code=status)
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        response = error(request, exc.status_code, str(exc.detail))
        response.headers.update(exc.headers or {})  # e.g. a 405's Allow
        return response

    @app.exception_handler(OverBudget)
    async def over_budget(request: Request, exc: OverBudget) -> Response:
        response = error(request, 429, str(exc))
        response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return error(request, 422, validation_message(exc))

    @app.exception_handler(FaceganError)
    async def facegan_error(request: Request, exc: FaceganError) -> Response:
        return error(request, 400, str(exc))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        # The trace goes to the server log only; the client learns nothing about the internals.
        log.error("unhandled error on %s", request.url.path, exc_info=exc)
        return error(request, 500, "internal server error")
