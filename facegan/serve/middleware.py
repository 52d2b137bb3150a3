"""The app's pure-ASGI middlewares: HEAD wherever GET works, headers every response carries, and
redirects that never name a host the client gave."""

from __future__ import annotations

from starlette.datastructures import URL, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
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


class SecurityHeaders:
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


class RelativeRedirects:
    """Pure-ASGI middleware making every redirect relative: Starlette answers a path with a stray
    trailing slash (or a mount without one) with an absolute URL built from the client's own Host
    header, which a cache or a mail-link could turn into a redirect to any host. Only the path and
    query are kept, and never with two leading slashes (or a backslash, which browsers read as one):
    "//host/" is a URL of another host."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_relative(message: Message) -> None:
            if message["type"] == "http.response.start" and 300 <= message["status"] < 400:
                headers = MutableHeaders(scope=message)
                if "location" in headers:
                    headers["location"] = relative(headers["location"])
            await send(message)

        await self.app(scope, receive, send_relative)


def relative(location: str) -> str:
    """`location` as a path-absolute reference on this server: "/path?query"."""
    url = URL(location)
    path = "/" + url.path.lstrip("/\\")  # one leading slash, whatever run of slashes/backslashes
    return f"{path}?{url.query}" if url.query else path
