"""Connection-level defences of `facegan serve`, as a uvicorn HTTP protocol (h11) with timeouts and a
per-client connection cap.

uvicorn counts every open connection against `limit_concurrency`, but arms no timer until a first
response has been sent: a connection that never finishes its request headers stays open forever, and
a few hundred of them ("slow-loris") make every real request a 503. This protocol adds:

- a read deadline: a client has `header_timeout` seconds, from connecting or from the end of the
  previous response, to send a whole request (headers and any body); then it gets a 408 and is closed;
- a send deadline: a response that cannot be written for `send_timeout` seconds because the client
  stopped reading is dropped, so non-reading clients cannot pin megabytes of GIF in memory;
- a cap of `conns_per_client` open connections per client address (IPv6: per /64); further ones get
  a 429 and are closed at once, so one address cannot take the slots everyone else needs. Addresses
  in `forwarded_allow_ips` (reverse proxies, which carry many clients) are exempt.

Imported only by `facegan.serve.serve`, so building the app alone does not need uvicorn.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.utils import get_remote_addr
from uvicorn.server import ServerState

from facegan.serve_limits import ServeLimits, client_key

log = logging.getLogger("facegan.serve")


def raw_error(status: int, reason: str, message: str, retry_after: int | None = None) -> bytes:
    """A complete HTTP/1.1 error response with the API's one-line JSON body, for replies written
    before (or without) a parsed request, where the app cannot answer."""
    body = json.dumps({"error": message}).encode()
    retry = f"retry-after: {retry_after}\r\n" if retry_after is not None else ""
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nx-content-type-options: nosniff\r\n{retry}"
            f"connection: close\r\n\r\n")
    return head.encode("ascii") + body


class ConnectionGuard:
    """The open-connection counts of one server process, per client address."""

    def __init__(self, limits: ServeLimits) -> None:
        self.limits = limits
        self.trust_all = "*" in limits.forwarded_allow_ips
        self.trusted = [ipaddress.ip_network(e, strict=False)
                        for e in limits.forwarded_allow_ips if e != "*"]
        self.open: dict[str, int] = {}

    def is_proxy(self, host: str) -> bool:
        if self.trust_all:
            return True
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(ip in net for net in self.trusted)

    def admit(self, host: str | None) -> tuple[bool, str | None]:
        """(allowed, key to release later or None when the connection is not counted)."""
        cap = self.limits.conns_per_client
        if cap == 0 or host is None or self.is_proxy(host):
            return True, None
        key = client_key(host)
        count = self.open.get(key, 0)
        if count >= cap:
            return False, None
        self.open[key] = count + 1
        return True, key

    def release(self, key: str) -> None:
        left = self.open.get(key, 0) - 1
        if left > 0:
            self.open[key] = left
        else:
            self.open.pop(key, None)


class GuardedConfig(uvicorn.Config):
    """uvicorn's Config running `GuardedH11Protocol` with `limits`. It is pickled whole into each
    `--workers` process; each process then counts its own connections."""

    def __init__(self, app: Any, *, limits: ServeLimits, **kwargs: Any) -> None:
        super().__init__(app, http=GuardedH11Protocol, timeout_keep_alive=limits.keep_alive, **kwargs)
        self.limits = limits
        self._guard: ConnectionGuard | None = None

    @property
    def guard(self) -> ConnectionGuard:
        if self._guard is None:  # made in the process that serves, never shared across processes
            self._guard = ConnectionGuard(self.limits)
        return self._guard

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_guard": None}


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with read and send deadlines and the per-client connection cap."""

    def __init__(self, config: uvicorn.Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        if not isinstance(config, GuardedConfig):  # the counts must be shared by the whole server
            raise TypeError("GuardedH11Protocol runs only under a GuardedConfig")
        self.guard = config.guard
        self._key: str | None = None
        self._rejected = False
        self._read_timer: asyncio.TimerHandle | None = None
        self._send_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        peer = get_remote_addr(transport)
        allowed, self._key = self.guard.admit(peer[0] if peer else None)
        if not allowed:
            # Not registered with the server at all, so it counts against no limit while it closes.
            self._rejected = True
            self.transport = transport
            transport.write(raw_error(429, "Too Many Requests",
                                      "too many open connections from your address", retry_after=1))
            transport.close()
            return
        super().connection_made(transport)
        self._watch_reads()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._rejected:
            return
        self._cancel_timers()
        if self._key is not None:
            self.guard.release(self._key)
            self._key = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._rejected:  # already answered and closing
            return
        super().data_received(data)
        self._watch_reads()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch_reads()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_timer is None:
            self._send_timer = self.loop.call_later(self.guard.limits.send_timeout, self._send_timed_out)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    # ------------------------------------------------------------------ deadlines

    def _awaiting_client(self) -> bool:
        """Whether the connection waits for the client to send (the rest of) a request."""
        return (not self.transport.is_closing()
                and self.conn.their_state in (h11.IDLE, h11.SEND_BODY))

    def _watch_reads(self) -> None:
        # The deadline runs from the moment the server starts waiting, not from the last byte:
        # a slow-loris client sends a byte every few seconds precisely to reset per-byte timers.
        if self._awaiting_client():
            if self._read_timer is None:
                self._read_timer = self.loop.call_later(self.guard.limits.header_timeout,
                                                         self._read_timed_out)
        elif self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if not self._awaiting_client():
            return
        if self.cycle is None or self.cycle.response_complete:  # no response under way: say why
            limit = self.guard.limits.header_timeout
            self.transport.write(raw_error(408, "Request Timeout",
                                           f"request not received within {limit:g} s"))
        self.transport.close()

    def _send_timed_out(self) -> None:
        self._send_timer = None
        log.warning("dropped a connection whose client read nothing for %g s",
                    self.guard.limits.send_timeout)
        self.transport.abort()  # close() would wait for the very buffer that does not drain

    def _cancel_timers(self) -> None:
        for timer in (self._read_timer, self._send_timer):
            if timer is not None:
                timer.cancel()
        self._read_timer = self._send_timer = None
