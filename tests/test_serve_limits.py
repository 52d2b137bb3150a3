"""Unit tests of the server's admission control (facegan.serve.limits) and connection guard, in-process."""

from __future__ import annotations

import asyncio
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

from facegan.errors import FaceganError
from facegan.serve.conn import ConnectionGuard, raw_error
from facegan.serve.limits import CostBudget, OverBudget, ServeLimits, client_key, image_cost


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 10))  # bounded: a bug in the queue must not hang the suite


def test_client_key_groups_ipv6_by_64_and_unmaps_ipv4() -> None:
    assert client_key("203.0.113.7") == "203.0.113.7"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:203.0.113.7") == "203.0.113.7"
    assert client_key(None) == "unknown"


def test_image_cost_counts_output_pixels_but_never_fewer_than_native() -> None:
    assert image_cost(60, 512, 64) == pytest.approx(60 * 512 * 512 / 1e6)
    assert image_cost(1, 32, 64) == image_cost(1, 64, 64)


def test_a_client_over_its_share_is_refused_at_once_others_are_not() -> None:
    async def main() -> None:
        budget = CostBudget(total=10, per_client=4, max_wait=5)
        async with budget.admit("a", 3):
            with pytest.raises(OverBudget) as err:
                async with budget.admit("a", 2):
                    pass
            assert err.value.retry_after == 1
            async with budget.admit("b", 4):
                assert budget.used == 7
            async with budget.admit("a", 1):  # what is left of a's share
                pass
        assert budget.used == 0 and budget.clients == 0

    run(main())


def test_oversized_requests_run_alone_as_one_clients_share() -> None:
    async def main() -> None:
        budget = CostBudget(total=8, per_client=4, max_wait=0)
        async with budget.admit("a", 1000):
            assert budget.used == 4
        assert budget.used == 0

    run(main())


def test_shared_budget_queues_in_order_then_times_out() -> None:
    async def main() -> None:
        budget = CostBudget(total=4, per_client=4, max_wait=0.3)
        order: list[str] = []
        release = asyncio.Event()

        async def hold(client: str, cost: float) -> None:
            async with budget.admit(client, cost):
                order.append(client)
                await release.wait()

        first = asyncio.create_task(hold("a", 3))
        await asyncio.sleep(0)
        second = asyncio.create_task(hold("b", 2))  # waits: 3 + 2 > 4
        third = asyncio.create_task(hold("c", 1))  # fits, but must not overtake b
        await asyncio.sleep(0.05)
        assert order == ["a"]
        release.set()
        await asyncio.gather(first, second, third)
        assert order == ["a", "b", "c"]

        async with budget.admit("a", 4):
            t0 = asyncio.get_running_loop().time()
            with pytest.raises(OverBudget, match="busy") as err:
                async with budget.admit("b", 1):
                    pass
            assert asyncio.get_running_loop().time() - t0 >= 0.25
            assert err.value.retry_after == 1
        assert budget.used == 0 and budget.clients == 0

    run(main())


def test_a_cancelled_waiter_leaves_the_queue_and_unblocks_the_rest() -> None:
    async def main() -> None:
        budget = CostBudget(total=4, per_client=4, max_wait=5)
        release = asyncio.Event()

        async def hold(client: str, cost: float) -> None:
            async with budget.admit(client, cost):
                await release.wait()

        holder = asyncio.create_task(hold("a", 3))
        await asyncio.sleep(0)
        big = asyncio.create_task(hold("b", 4))  # head of the queue
        small = asyncio.create_task(hold("c", 1))  # fits now, but queued behind b
        await asyncio.sleep(0.05)
        big.cancel()  # b's client went away
        await asyncio.sleep(0.05)
        assert budget.used == 4 and not small.done()  # c got in once b left
        release.set()
        await asyncio.gather(holder, small)
        with pytest.raises(asyncio.CancelledError):
            await big
        assert budget.used == 0 and budget.clients == 0

    run(main())


def test_limits_are_validated() -> None:
    with pytest.raises(FaceganError, match="client-budget-mpix"):
        ServeLimits(budget_mpix=8, client_budget_mpix=16)
    with pytest.raises(FaceganError, match="header-timeout"):
        ServeLimits(header_timeout=0)
    with pytest.raises(FaceganError, match="forwarded-allow-ips"):
        ServeLimits(forwarded_allow_ips=("not-an-ip",))


def test_connection_guard_caps_each_address_but_not_proxies() -> None:
    guard = ConnectionGuard(ServeLimits(conns_per_client=2, forwarded_allow_ips=("10.0.0.0/8",)))
    keys = [guard.admit("192.0.2.1") for _ in range(3)]
    assert [ok for ok, _ in keys] == [True, True, False]
    assert guard.admit("192.0.2.2")[0]
    guard.release(keys[0][1])  # type: ignore[arg-type]
    assert guard.admit("192.0.2.1")[0]
    assert all(guard.admit("10.1.2.3") == (True, None) for _ in range(10))  # a proxy: not counted
    assert ConnectionGuard(ServeLimits(conns_per_client=0)).admit("192.0.2.1") == (True, None)


def test_raw_error_is_a_complete_one_line_json_response() -> None:
    raw = raw_error(429, "Too Many Requests", "slow down", retry_after=3)
    head, body = raw.split(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 429 Too Many Requests\r\n")
    assert b"retry-after: 3" in head and f"content-length: {len(body)}".encode() in head
    assert body == b'{"error": "slow down"}'


# ----------------------------------------------------------------------------- hostile request heads
# A real GuardedH11Protocol server in this process (a thread), serving a tiny untrained generator.


@pytest.fixture(scope="module")
def guarded_port() -> Iterator[int]:
    pytest.importorskip("uvicorn")
    import uvicorn

    from facegan.config import ModelConfig
    from facegan.models import build_models
    from facegan.serve import build_app
    from facegan.serve.conn import GuardedConfig

    g, _ = build_models(ModelConfig(size=32, ngf=8, ndf=8), seed=0)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = GuardedConfig(build_app({"tiny": g}), limits=ServeLimits(header_timeout=5), host="127.0.0.1",
                           port=port, log_level="warning", log_config=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)  # no signal handlers off-main
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(10)


def exchange(port: int, raw: bytes, piece: int = 0) -> tuple[int, dict[str, str], bytes]:
    """Send `raw` on a fresh connection (in pieces of `piece` bytes a moment apart, so the server
    answers while the client is still sending) and read the whole answer. A reset (the server closing
    while the client still sends) fails the test: the client would never see the reason."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for start in range(0, len(raw), piece or len(raw)):
            sock.sendall(raw[start:start + (piece or len(raw))])
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


def test_a_long_request_target_gets_a_414_even_while_the_client_still_sends(guarded_port: int) -> None:
    """Up to 8 KiB of path and query is served; beyond, a 414 with the reason, also for a 1 MB query
    the server refuses long before it has all arrived (it drains the rest instead of resetting)."""
    at_limit = "/healthz?x=" + "a" * (8192 - len("/healthz?x="))
    assert exchange(guarded_port, get_raw(at_limit))[0] == 200
    for size in (8193, 100_000, 1_000_000):
        status, headers, body = exchange(guarded_port, get_raw("/healthz?x=" + "a" * size), piece=65_536)
        assert status == 414, (size, status, body[:200])
        assert "8192 bytes" in one_line_error(body) and headers["connection"] == "close"
    many = "/api/face.png?" + "&".join(f"p{i}=1" for i in range(20_000))
    assert exchange(guarded_port, get_raw(many), piece=16_384)[0] == 414


def test_too_many_or_too_large_headers_get_a_431(guarded_port: int) -> None:
    fields = "".join(f"X-H{i}: 1\r\n" for i in range(97))  # + Host, Connection: 99 fields
    assert exchange(guarded_port, get_raw("/healthz", fields))[0] == 200
    for headers in ("".join(f"X-H{i}: 1\r\n" for i in range(99)),  # 101 fields
                    "".join(f"X-H{i}: {'b' * 200}\r\n" for i in range(500)),
                    "X-Big: " + "a" * 20_000 + "\r\n", "X-Big: " + "a" * 100_000 + "\r\n"):
        status, _, body = exchange(guarded_port, get_raw("/healthz", headers))
        assert status == 431, (len(headers), status, body[:200])
        assert "header" in one_line_error(body)


def test_heads_that_proxies_may_read_differently_are_refused(guarded_port: int) -> None:
    """HTTP/2.0 in an HTTP/1 request line, obsolete line folding, bare-LF line ends and a body framed
    both by length and chunks each get a 400 saying what to send instead (a proxy in front that read
    them otherwise could smuggle requests)."""
    cases = {
        "HTTP/1.1": b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n",
        "line folding": get_raw("/healthz", "X-Fold: a\r\n  b\r\n"),
        "CRLF": b"GET /healthz HTTP/1.1\nHost: x\r\nConnection: close\r\n\r\n",
        "CRLF ": b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\n",
        "Content-Length and Transfer-Encoding": get_raw("/healthz", "Content-Length: 4\r\n"
                                                        "Transfer-Encoding: chunked\r\n") + b"0\r\n\r\n",
    }
    for hint, raw in cases.items():
        status, _, body = exchange(guarded_port, raw)
        assert status == 400, (raw, status, body[:200])
        assert hint.strip() in one_line_error(body), raw
    assert exchange(guarded_port, b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n")[0] == 200


def test_a_bad_chunk_after_the_app_answered_is_a_400_without_a_traceback(
        guarded_port: int, caplog: pytest.LogCaptureFixture) -> None:
    """POST /healthz (a 405 for the app) with a malformed chunked body: the client gets the 400 for
    the body, and the app's 405, which can no longer be sent, is dropped quietly."""
    raw = (b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
           b"zz\r\nab\r\n")
    with caplog.at_level(logging.INFO):
        status, _, body = exchange(guarded_port, raw)
        time.sleep(0.3)  # the app's task runs after the refusal
    assert status == 400 and "chunk" in one_line_error(body)
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], caplog.text
    assert exchange(guarded_port, get_raw("/healthz"))[0] == 200


def test_check_head_limits_are_exact_and_judge_incomplete_heads() -> None:
    """At each limit a head passes, one byte or field more is refused; an incomplete head is refused
    as soon as it is over a limit, never before."""
    from facegan.serve.head import check_head, head_limit

    limits = ServeLimits(max_target=100, max_header_bytes=200, max_headers=3)

    def head(target: str, fields: list[str], end: str = "\r\n") -> bytes:
        return f"GET {target} HTTP/1.1\r\n{''.join(f + chr(13) + chr(10) for f in fields)}{end}".encode()

    def status(raw: bytes) -> int | None:
        refusal = check_head(raw, limits)
        return refusal.status if refusal else None

    assert status(head("/" + "a" * 99, ["Host: x"])) is None
    assert status(head("/" + "a" * 100, ["Host: x"])) == 414
    assert status(b"GET /" + b"a" * 200) == 414  # the request line is not even finished
    assert status(b"GET /" + b"a" * 90) is None
    assert status(head("/", ["A: 1", "B: 2", "C: 3"])) is None
    assert status(head("/", ["A: 1", "B: 2", "C: 3", "D: 4"])) == 431
    at = "X: " + "b" * (200 - 5)  # 200 bytes with its CRLF
    assert status(head("/", [at])) is None
    assert status(head("/", [at + "b"])) == 431
    assert status(b"GET / HTTP/1.1\r\nX: " + b"b" * 300) == 431  # headers not finished
    assert status(head("/", ["Host: x"]) + b"ignored body \n\n bytes") is None
    assert status(b"GET / HTTP/1.2\r\nHost: x\r\n\r\n") is None  # a later 1.x is read as 1.1
    for bad in (b"GET / HTTP/3.0\r\n\r\n", b"GET / HTTP/0.9\r\nHost: x\r\n\r\n",
                b"GET / HTTP/1.1\nHost: x\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n\n",
                b"GET / HTTP/1.1\r\nA: 1\r\n\tb\r\n\r\n",
                b"POST / HTTP/1.1\r\ncontent-length: 1\r\nTransfer-Encoding : chunked\r\n\r\n"):
        assert status(bad) == 400, bad
    # a head of head_limit bytes with no end has broken a limit whatever its shape
    n = head_limit(limits) + 1
    for shape in (b"GET /" + b"a" * n, b"GET / HTTP/1.1\r\n" + b"X: 1\r\n" * n):
        assert status(shape[:n]) in (414, 431)


def test_head_limits_are_validated() -> None:
    for name in ("max_target", "max_header_bytes", "max_headers"):
        with pytest.raises(FaceganError, match=name.replace("_", "-")):
            ServeLimits(**{name: 0})


def test_pipelined_requests_are_each_checked(guarded_port: int) -> None:
    """Requests sent back to back on one connection: each is served or refused on its own head."""
    ok = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    folded = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n"
    with socket.create_connection(("127.0.0.1", guarded_port), timeout=10) as sock:
        sock.sendall(ok + ok + folded + ok)
        # Read to the end (the server closes after the refusal) and split afterwards: one
        # http.client.HTTPResponse per answer would each buffer ahead and swallow the next answers.
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    statuses = [int(s) for s in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]
    assert statuses == [200, 200, 400]  # the last request, after the refusal, is not served
    refusal_body = data[data.rindex(b"HTTP/1.1 400"):].split(b"\r\n\r\n", 1)[1]
    assert "folding" in one_line_error(refusal_body)
