"""`facegan serve`'s request-level defences, as pure-ASGI middleware in front of the app.

The HTTP server (hypercorn, facegan/serve/run.py) is configured through its public options only: it
closes a connection that has not sent a whole request head within --header-timeout (the timer runs
from connecting, so trickling a byte at a time does not reset it), bounds a head's bytes, and holds
idle connections cheaply. What is left is done here, per request, where it can be counted honestly:

- requests in flight, not connections: at most `requests_in_flight` at once in this process (more get
  a quick 503) and `requests_per_client` per client address (IPv6: per /64; more get a 429). A
  connection that never finishes its head is never a request, so it holds no slot, and every slot is
  released on every way out of a request (`finally`);
- the client address: the socket's peer, or, from a proxy in `forwarded_allow_ips`, the right-most
  X-Forwarded-For entry that is not a trusted proxy itself;
- request heads within the limits (`max_target` → 414, `max_headers`/`max_header_bytes` → 431), HTTP/1.x
  only, and no body framed both by Content-Length and Transfer-Encoding (a proxy in front that
  framed it by the other could be made to smuggle a request): a 400;
- WebSocket upgrades, which nothing here serves: refused with a 403 before any handshake;
- a send deadline: a response the client has not read for `send_timeout` seconds is logged; the
  kernel drops the connection at the same deadline (TCP_USER_TIMEOUT, set on the listening socket).

Every refusal is one line of JSON, `{"error": "..."}`, with `Connection: close`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facegan.serve.limits import ServeLimits, client_key

log = logging.getLogger("facegan.serve")
REQUEST_LINE_SLACK = 64  # bytes of a request line besides its target: method, spaces, HTTP/1.1, CRLF


def head_limit(limits: ServeLimits) -> int:
    """Bytes the server may buffer for one request head: every head within the limits fits, so a
    head that does not is over a limit whatever it holds (the server then answers 431 itself)."""
    return limits.max_target + REQUEST_LINE_SLACK + limits.max_header_bytes + 4


def refusal(status: int, message: str, retry_after: int | None = None) -> list[Message]:
    """The ASGI messages of a one-line JSON error that closes the connection."""
    body = json.dumps({"error": message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    return [
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body},
    ]


class Trusted:
    """The proxies whose X-Forwarded-For is believed (`forwarded_allow_ips`: addresses, networks, *)."""

    def __init__(self, entries: tuple[str, ...]) -> None:
        self.all = "*" in entries
        self.nets = [ipaddress.ip_network(e, strict=False) for e in entries if e != "*"]

    def __contains__(self, host: str) -> bool:
        if self.all:
            return True
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(ip in net for net in self.nets)

    def client(self, peer: str, forwarded: str | None) -> str:
        """The client behind `peer`: itself, or the right-most untrusted X-Forwarded-For hop."""
        if forwarded is None or peer not in self:
            return peer
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        for hop in reversed(hops):
            if hop not in self:
                return hop
        return hops[0] if hops else peer


def check_head(scope: Scope, limits: ServeLimits) -> tuple[int, str] | None:
    """(status, reason) when the request in `scope` must be refused before the app sees it."""
    target = len(scope.get("raw_path") or scope["path"].encode()) + len(scope.get("query_string", b""))
    if scope.get("query_string"):
        target += 1  # the "?"
    if target > limits.max_target:
        return 414, f"request target (path and query) longer than {limits.max_target} bytes"
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    if len(headers) > limits.max_headers:
        return 431, f"more than {limits.max_headers} header fields; send fewer"
    if sum(len(k) + len(v) + 4 for k, v in headers) > limits.max_header_bytes:  # "k: v" and CRLF
        return 431, f"request header fields larger than {limits.max_header_bytes} bytes in all"
    version = scope.get("http_version", "1.1")
    if not version.startswith("1."):
        return 400, f"HTTP/{version} is not spoken here: send an HTTP/1.1 request line"
    names = {k.lower() for k, _ in headers}
    if b"content-length" in names and b"transfer-encoding" in names:
        return 400, "both Content-Length and Transfer-Encoding: send one of them"
    return None


class RequestGuard:
    """Pure-ASGI middleware: the defences of this module's docstring, for one server process."""

    def __init__(self, app: ASGIApp, limits: ServeLimits) -> None:
        self.app, self.limits = app, limits
        self.trusted = Trusted(limits.forwarded_allow_ips)
        self.in_flight = 0
        self.by_client: dict[str, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._refuse_upgrade(scope, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope = self._with_client(scope)
        bad = check_head(scope, self.limits)
        if bad is not None:
            log.warning("refused a request from %s: %d %s", scope["client"][0], *bad)
            await self._send_all(send, refusal(*bad))
            return
        key = client_key(scope["client"][0])
        if self.in_flight >= self.limits.requests_in_flight:
            await self._send_all(send, refusal(503, "server busy; retry in 1 s", retry_after=1))
            return
        cap = self.limits.requests_per_client
        if cap and self.by_client.get(key, 0) >= cap:
            await self._send_all(
                send, refusal(429, "too many requests in flight from your address", retry_after=1)
            )
            return
        self.in_flight += 1
        self.by_client[key] = self.by_client.get(key, 0) + 1
        try:
            await self.app(scope, receive, self._deadline(send))
        finally:  # every way out: answered, refused by the app, failed, cancelled by a disconnect
            self.in_flight -= 1
            left = self.by_client[key] - 1
            if left:
                self.by_client[key] = left
            else:
                del self.by_client[key]

    def _with_client(self, scope: Scope) -> Scope:
        peer = (scope.get("client") or ("unknown", 0))[0]
        forwarded = None
        for name, value in scope["headers"]:
            if name == b"x-forwarded-for":
                forwarded = value.decode("latin-1")
        return {**scope, "client": (self.trusted.client(peer, forwarded), 0)}

    def _deadline(self, send: Send) -> Send:
        timeout = self.limits.send_timeout

        async def send_within(message: Message) -> None:
            sending = asyncio.ensure_future(send(message))
            try:
                await asyncio.wait_for(asyncio.shield(sending), timeout)
            except asyncio.TimeoutError:
                # Not cancelled here: the kernel aborts the connection at this deadline
                # (TCP_USER_TIMEOUT), which ends the send and frees what the server had buffered.
                log.warning("dropping a connection whose client read nothing for %g s", timeout)
                await sending

        return send_within

    async def _refuse_upgrade(self, scope: Scope, send: Send) -> None:
        messages = refusal(403, "WebSocket is not served here; use the HTTP API")
        if "websocket.http.response" in scope.get("extensions", {}):  # a denial with a body
            for message in messages:
                await send({**message, "type": message["type"].replace("http.", "websocket.http.")})
        else:
            await send({"type": "websocket.close", "code": 1008})

    @staticmethod
    async def _send_all(send: Send, messages: list[Message]) -> None:
        for message in messages:
            await send(message)
