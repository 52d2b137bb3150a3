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
  in `forwarded_allow_ips` (reverse proxies, which carry many clients) are exempt;
- limits on the request head (`max_target`, `max_header_bytes`, `max_headers`) and refusal of heads a
  proxy may read differently (facegan/serve/head.py), each answered with its own status and one-line
  reason where uvicorn would say only "Invalid HTTP request received.";
- a lingering close after such a refusal: the error is sent, the sending side shut, and whatever the
  client still sends is read and dropped for up to `LINGER_S` before the socket closes. Closing a
  socket with unread input makes the kernel reset the connection, and a reset throws away the error
  before the client has read it (a 1 MB query would see "connection reset", not the 414).

Imported only by `facegan.serve.run.serve`, so building the app alone does not need uvicorn.
"""

from __future__ import annotations

import asyncio
import http
import ipaddress
import json
import logging
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.utils import get_remote_addr
from uvicorn.server import ServerState

from facegan.serve.head import Refusal, check_head, head_limit
from facegan.serve.limits import ServeLimits, client_key

log = logging.getLogger("facegan.serve")
LINGER_S = 2.0  # after a refusal, how long what the client still sends is read and dropped
H11_LINE_LIMIT = 16 * 1024  # h11's own default bound, kept for what follows a head (chunk lines, trailers)


def raw_error(status: int, reason: str, message: str, retry_after: int | None = None) -> bytes:
    """A complete HTTP/1.1 error response with the API's one-line JSON body, for replies written
    before (or without) a parsed request, where the app cannot answer."""
    body = json.dumps({"error": message}).encode()
    retry = f"retry-after: {retry_after}\r\n" if retry_after is not None else ""
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nx-content-type-options: nosniff\r\n{retry}"
            f"connection: close\r\n\r\n")
    return head.encode("ascii") + body


class StrictConnection(h11.Connection):
    """h11's server side, checking each request head with `check_head` before h11 parses it, and
    keeping the reason of a refusal (h11's own ones included) for the answer."""

    def __init__(self, limits: ServeLimits) -> None:
        self.limits, self.head_limit = limits, head_limit(limits)
        super().__init__(h11.SERVER, max(self.head_limit, H11_LINE_LIMIT))
        # While a request head is awaited, the first head_limit + 1 bytes of h11's receive buffer:
        # all check_head needs, without copying the buffer on every read.
        self._head = bytearray()
        self.refusal: Refusal | None = None
        self.refused_head = False  # whether the refusal is of a new request, not of a request's body

    def receive_data(self, data: bytes) -> None:
        super().receive_data(data)
        if self.their_state is h11.IDLE and len(self._head) <= self.head_limit:
            self._head += data[:self.head_limit + 1 - len(self._head)]

    def start_next_cycle(self) -> None:
        super().start_next_cycle()
        self._head = bytearray(self.trailing_data[0][:self.head_limit + 1])  # pipelined bytes

    def next_event(self) -> Any:
        in_head = self.their_state is h11.IDLE
        refusal = check_head(self._head, self.limits) if in_head and self._head else None
        if refusal is None:
            try:
                event = super().next_event()
            except h11.RemoteProtocolError as err:
                refusal = h11_refusal(err)
            else:
                if in_head and isinstance(event, h11.Request):
                    self._head.clear()
                return event
        self.refusal, self.refused_head = refusal, in_head
        raise h11.RemoteProtocolError(refusal.message, error_status_hint=refusal.status)


def h11_refusal(err: h11.RemoteProtocolError) -> Refusal:
    """h11's complaint as a refusal, without the bytes it quotes (the client's own, and unbounded)."""
    text = str(err)
    for quote in (": b'", ': b"', ": bytearray("):
        text = text.split(quote)[0]
    status = err.error_status_hint if 400 <= err.error_status_hint < 500 else 400
    return Refusal(status, f"malformed request: {text[:100]}")


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
        self.conn: StrictConnection = StrictConnection(config.limits)
        self._key: str | None = None
        self._rejected = False
        self._lingering = False
        self._read_timer: asyncio.TimerHandle | None = None
        self._send_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None

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
        if self._rejected or self._lingering:  # already answered and closing: dropped unread
            return
        super().data_received(data)
        self._watch_reads()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch_reads()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to anything h11 (here: StrictConnection) refuses; `msg` is uvicorn's
        generic "Invalid HTTP request received.", the refusal has the status and the reason."""
        refusal = self.conn.refusal or Refusal(400, "malformed request")
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        log.warning("refused a request from %s: %d %s", client, refusal.status, refusal.message)
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # The refused body is this cycle's: the app's answer (if it is still making one) can no
            # longer be sent, so its sends become no-ops rather than h11 errors logged as crashes.
            cycle.disconnected = True
            cycle.message_event.set()
        if self.conn.refused_head or cycle is None or not cycle.response_started:
            phrase = http.HTTPStatus(refusal.status).phrase
            self.transport.write(raw_error(refusal.status, phrase, refusal.message))
        self._linger()

    def shutdown(self) -> None:
        if self._lingering:
            self.transport.close()
            return
        super().shutdown()

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

    def _linger(self) -> None:
        """Close after a refusal: shut the sending side (the client sees the error end), drop what it
        still sends, and close when it closes or after LINGER_S, whichever comes first."""
        self._cancel_timers()
        self._lingering = True
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()  # sent once the error is; eof_received then closes the transport
        self.flow.resume_reading()
        self._linger_timer = self.loop.call_later(LINGER_S, self.transport.close)

    def _send_timed_out(self) -> None:
        self._send_timer = None
        log.warning("dropped a connection whose client read nothing for %g s",
                    self.guard.limits.send_timeout)
        self.transport.abort()  # close() would wait for the very buffer that does not drain

    def _cancel_timers(self) -> None:
        for timer in (self._read_timer, self._send_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()
        self._read_timer = self._send_timer = self._linger_timer = None
