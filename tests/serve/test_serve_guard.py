"""The request guard (facegan.serve.guard) in-process, and hostile request heads against a real server
(hypercorn configured by facegan.serve.run.server_config) in a thread of the test process."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest

from facegan.serve.guard import RequestGuard, Trusted, check_head, head_limit, refusal
from facegan.serve.limits import ServeLimits


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 10))  # bounded: a bug must not hang the suite


def http_scope(
    client: str, target: str = "/", headers: list[tuple[bytes, bytes]] | None = None, version: str = "1.1"
) -> dict[str, Any]:
    path, _, query = target.partition("?")
    return {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": headers or [(b"host", b"x")],
        "http_version": version,
        "client": (client, 1234),
    }


def test_requests_in_flight_are_capped_per_address_and_always_released() -> None:
    """Only requests count (a connection without one holds nothing); a slot is released whether
    the app answers, fails or is cancelled; a trusted proxy's requests count per forwarded client."""

    async def main() -> None:
        release = asyncio.Event()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope["path"] == "/fail":
                raise RuntimeError("boom")
            await release.wait()
            for message in refusal(200, "ok"):
                await send(message)

        limits = ServeLimits(requests_per_client=2, requests_in_flight=5, forwarded_allow_ips=("10.0.0.0/8",))
        guard = RequestGuard(app, limits)
        sent: list[tuple[str, int]] = []

        async def call(client: str, path: str = "/", headers: Any = None) -> None:
            async def send(message: Any) -> None:
                if message["type"] == "http.response.start":
                    sent.append((client, message["status"]))

            await guard(http_scope(client, path, headers), _no_body, send)

        held = [asyncio.create_task(call("192.0.2.1")) for _ in range(2)]
        await asyncio.sleep(0.01)
        await call("192.0.2.1")  # a third at once from that address
        assert sent == [("192.0.2.1", 429)] and guard.in_flight == 2
        sent.clear()
        xff = [(b"x-forwarded-for", b"198.51.100.7, 10.1.1.1")]
        held += [asyncio.create_task(call("10.0.0.1", headers=xff)) for _ in range(2)]
        await asyncio.sleep(0.01)
        cancelled = asyncio.create_task(call("192.0.2.9"))
        await asyncio.sleep(0.01)
        await call("10.0.0.2", headers=[(b"x-forwarded-for", b"198.51.100.8")])  # 6th in flight
        assert sent == [("10.0.0.2", 503)]
        assert guard.by_client == {"192.0.2.1": 2, "198.51.100.7": 2, "192.0.2.9": 1}
        sent.clear()
        cancelled.cancel()  # the client went away mid-request
        release.set()
        await asyncio.gather(*held)
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert sent == [("192.0.2.1", 200)] * 2 + [("10.0.0.1", 200)] * 2
        with pytest.raises(RuntimeError, match="boom"):
            await call("192.0.2.1", "/fail")
        assert guard.in_flight == 0 and guard.by_client == {}

    run(main())


async def _no_body() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def test_x_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    trusted = Trusted(("10.0.0.0/8", "127.0.0.1"))
    assert trusted.client("203.0.113.5", "198.51.100.1") == "203.0.113.5"  # not a proxy: ignored
    assert trusted.client("127.0.0.1", "198.51.100.1, 10.2.3.4") == "198.51.100.1"
    assert trusted.client("127.0.0.1", "6.6.6.6, 198.51.100.1") == "198.51.100.1"  # spoofed left entry
    assert trusted.client("127.0.0.1", None) == "127.0.0.1"
    assert Trusted(("*",)).client("192.0.2.1", "198.51.100.2") == "198.51.100.2"


def test_check_head_limits_are_exact() -> None:
    """At each limit a head passes, one byte or field more is refused."""
    limits = ServeLimits(max_target=100, max_header_bytes=200, max_headers=3)

    def status(
        target: str = "/",
        fields: int = 1,
        size: int = 0,
        version: str = "1.1",
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> int | None:
        headers = [(b"h%d" % i, b"1") for i in range(fields)]
        if size:
            headers = [(b"x", b"b" * (size - 5))]  # "x: " + value + CRLF
        bad = check_head(http_scope("192.0.2.1", target, headers + (extra or []), version), limits)
        return bad[0] if bad else None

    assert status("/" + "a" * 99) is None and status("/" + "a" * 100) == 414
    assert status("/a?" + "q" * 97) is None and status("/a?" + "q" * 98) == 414
    assert status(fields=3) is None and status(fields=4) == 431
    assert status(size=200) is None and status(size=201) == 431
    assert status(version="1.0") is None
    assert status(version="2.0") == 400
    both = [(b"content-length", b"1"), (b"transfer-encoding", b"chunked")]
    assert status(fields=0, extra=both) == 400
    assert head_limit(limits) > 100 + 200  # every head within the limits fits the server's buffer


def test_refusal_is_a_complete_one_line_json_response() -> None:
    start, body = refusal(429, "slow down", retry_after=3)
    headers = dict(start["headers"])
    assert start["status"] == 429 and headers[b"retry-after"] == b"3" and headers[b"connection"] == b"close"
    assert headers[b"content-length"] == str(len(body["body"])).encode()
    assert body["body"] == b'{"error": "slow down"}'


# ----------------------------------------------------------------------------- hostile request heads
# A real server in this process (a thread): hypercorn as `facegan serve` configures it.


@contextlib.contextmanager
def serving(app: Any, limits: ServeLimits) -> Iterator[int]:
    """Serve `app` with `facegan serve`'s server settings on a free loopback port, in a thread."""
    import hypercorn.asyncio

    from facegan.serve.run import _bind, server_config

    sock = _bind("127.0.0.1", 0)
    config = server_config(limits, sock)
    config.accesslog = None
    stop = threading.Event()

    async def stopped() -> None:
        while not stop.is_set():
            await asyncio.sleep(0.05)

    thread = threading.Thread(
        target=lambda: asyncio.run(hypercorn.asyncio.serve(app, config, shutdown_trigger=stopped)),
        daemon=True,
    )
    thread.start()
    port = sock.getsockname()[1]
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError):
                if exchange(port, get_raw("/healthz"))[0] == 200:
                    break
            assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
            time.sleep(0.05)
        yield port
    finally:
        stop.set()
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def guarded_port() -> Iterator[int]:
    from facegan.config.schema import ModelConfig
    from facegan.networks.factory import build_models
    from facegan.serve import build_app

    g, _ = build_models(ModelConfig(size=32, ngf=8, ndf=8), seed=0)
    limits = ServeLimits(header_timeout=5)
    with serving(build_app({"tiny": g}, limits=limits), limits) as port:
        yield port


def exchange(port: int, raw: bytes, piece: int = 0) -> tuple[int, dict[str, str], bytes]:
    """Send `raw` on a fresh connection (in pieces of `piece` bytes a moment apart, so the server
    answers while the client is still sending) and read the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # it may answer before the end
            for start in range(0, len(raw), piece or len(raw)):
                sock.sendall(raw[start : start + (piece or len(raw))])
                if piece:
                    time.sleep(0.002)
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()


def get_raw(target: str, headers: str = "") -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n".encode("latin-1")


def one_line_error(body: bytes) -> str:
    message = json.loads(body)["error"]
    assert isinstance(message, str) and message.strip() and "\n" not in message
    return message


def test_a_long_request_target_gets_a_414_or_the_servers_431(guarded_port: int) -> None:
    """Up to 8 KiB of path and query is served; beyond, a 414 with the reason. A head larger than the
    server's head buffer (about 24 KiB by default) is refused by hypercorn itself: a bare 431, sent
    while the client is still sending."""
    at_limit = "/healthz?x=" + "a" * (8192 - len("/healthz?x="))
    assert exchange(guarded_port, get_raw(at_limit))[0] == 200
    status, headers, body = exchange(guarded_port, get_raw(at_limit + "a"))
    assert status == 414 and "8192 bytes" in one_line_error(body) and headers["connection"] == "close"
    for size in (100_000, 1_000_000):
        status, _, _ = exchange(guarded_port, get_raw("/healthz?x=" + "a" * size), piece=65_536)
        assert status == 431, (size, status)
    many = "/api/face.png?" + "&".join(f"p{i}=1" for i in range(20_000))
    assert exchange(guarded_port, get_raw(many), piece=16_384)[0] == 431


def test_too_many_or_too_large_headers_get_a_431(guarded_port: int) -> None:
    fields = "".join(f"X-H{i}: 1\r\n" for i in range(97))  # + Host, Connection: 99 fields
    assert exchange(guarded_port, get_raw("/healthz", fields))[0] == 200
    for headers in (
        "".join(f"X-H{i}: 1\r\n" for i in range(99)),  # 101 fields
        "X-Big: " + "a" * 17_000 + "\r\n",
    ):
        status, _, body = exchange(guarded_port, get_raw("/healthz", headers))
        assert status == 431, (len(headers), status, body[:200])
        assert "header" in one_line_error(body)
    for headers in (
        "".join(f"X-H{i}: {'b' * 200}\r\n" for i in range(500)),  # past the head buffer
        "X-Big: " + "a" * 100_000 + "\r\n",
    ):
        assert exchange(guarded_port, get_raw("/healthz", headers), piece=16_384)[0] == 431


def test_heads_a_proxy_may_frame_differently_are_refused(guarded_port: int) -> None:
    """HTTP/2.0 in an HTTP/1 request line and a body framed both by length and by chunks each get a
    400 saying what to send instead; HTTP/1.0 is served. Obsolete line folding and bare-LF line ends
    are read as RFC 9112 allows (h11 unfolds and accepts them): served, never a 5xx."""
    cases = {
        "HTTP/1.1": b"GET /healthz HTTP/2.0\r\nHost: x\r\nConnection: close\r\n\r\n",
        "Content-Length and Transfer-Encoding": get_raw(
            "/healthz", "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n"
        )
        + b"0\r\n\r\n",
    }
    for hint, raw in cases.items():
        status, _, body = exchange(guarded_port, raw)
        assert status == 400, (raw, status, body[:200])
        assert hint in one_line_error(body), raw
    assert exchange(guarded_port, b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n")[0] == 200
    for raw in (
        get_raw("/healthz", "X-Fold: a\r\n  b\r\n"),
        b"GET /healthz HTTP/1.1\nHost: x\r\nConnection: close\r\n\r\n",
    ):
        assert exchange(guarded_port, raw)[0] == 200


def test_a_bad_chunk_is_a_4xx_without_a_traceback(
    guarded_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """POST /healthz (a 405 for the app) with a malformed chunked body: the client gets a 4xx (the
    server's 400 for the body, or the app's 405 if that came first), nothing is logged as an error,
    and the server carries on."""
    raw = (
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"zz\r\nab\r\n"
    )
    with caplog.at_level(logging.INFO):
        status, _, _ = exchange(guarded_port, raw)
        time.sleep(0.3)  # the app's task runs after the refusal
    assert status in (400, 405)
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], caplog.text
    assert exchange(guarded_port, get_raw("/healthz"))[0] == 200


def test_pipelined_requests_are_each_checked(guarded_port: int) -> None:
    """Requests sent back to back on one connection: each is served or refused on its own head."""
    ok = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    long = b"GET /healthz?" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", guarded_port), timeout=10) as sock:
        sock.sendall(ok + ok + long + ok)
        # Read to the end (the server closes after the refusal) and split afterwards: one
        # http.client.HTTPResponse per answer would each buffer ahead and swallow the next answers.
        data = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                data += chunk
    statuses = [int(s) for s in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]
    assert statuses == [200, 200, 414]  # the last request, after the refusal, is not served
    refusal_body = data[data.rindex(b"HTTP/1.1 414") :].split(b"\r\n\r\n", 1)[1]
    assert "8192 bytes" in one_line_error(refusal_body)
