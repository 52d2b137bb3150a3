"""`facegan serve` against many attackers at once, WebSocket upgrades and a client-named Host: each
against a real server process, from several loopback addresses (127.0.0.2, 127.0.1.1 …)."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.serve.helpers import _vm_kib, make_models, request, server_process

PARTIAL = b"GET /api/face.png?seed=1 HTTP/1.1\r\nHost: x\r\nX-Wait: "  # a head that never ends


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def base(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with server_process(models, tmp_path_factory.mktemp("server") / "server.log") as (url, _):
        yield url


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has answered or closed `sock` (without waiting)."""
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)
        return True  # an answer, or b"": closed
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_a_thousand_slow_clients_from_30_addresses_leave_real_clients_served(
    models: dict[str, Path], tmp_path: Path
) -> None:
    """1000 connections, 33 or 34 from each of 30 addresses (more than the per-address share of the
    old connection cap, enough to fill the server's old global limit 4 times over), each sends part of
    a head and waits. 10 real clients, each from its own address, are all served within 2 s; the
    stalled connections are closed after --header-timeout; memory stays bounded."""
    with server_process(models, tmp_path / "server.log", ["--header-timeout", "2"]) as (url, proc):
        port = int(url.rsplit(":", 1)[1])
        rss0 = _vm_kib(proc.pid, "VmRSS")
        stalled: list[socket.socket] = []
        try:
            for i in range(1000):
                sock = socket.socket()
                stalled.append(sock)
                sock.bind((f"127.0.1.{1 + i % 30}", 0))
                sock.settimeout(5)
                with contextlib.suppress(OSError):  # a refusal may already have closed it
                    sock.connect(("127.0.0.1", port))
                    sock.sendall(PARTIAL)
            t0 = time.monotonic()
            with ThreadPoolExecutor(10) as pool:
                answers = list(
                    pool.map(
                        lambda i: request(f"{url}/healthz", source=f"127.0.0.{2 + i}", timeout=5), range(10)
                    )
                )
            took = time.monotonic() - t0
            statuses = [status for status, _, _ in answers]
            assert statuses == [200] * 10, [(a[0], a[2][:100]) for a in answers]
            assert took < 2.0, took
            growth_mb = (_vm_kib(proc.pid, "VmRSS") - rss0) / 1024
            assert growth_mb < 100, growth_mb  # what 1000 stalled connections cost the server
            deadline = time.monotonic() + 8  # --header-timeout 2, with room for a busy machine
            while (left := sum(not closed_by_server(s) for s in stalled)) > 0:
                assert time.monotonic() < deadline, f"{left} stalled connections still open"
                time.sleep(0.25)
        finally:
            for sock in stalled:
                sock.close()
        assert request(f"{url}/healthz", source="127.0.1.1", timeout=5)[0] == 200  # attackers' own too


def upgrade(port: int, source: str) -> bytes:
    """A WebSocket upgrade of / from `source`; whatever the server sends before closing (5 s at most)."""
    with socket.socket() as sock:
        sock.bind((source, 0))
        sock.settimeout(5)
        sock.connect(("127.0.0.1", port))
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        got = b""
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := sock.recv(65536):
                got += chunk
        return got


def test_websocket_upgrades_are_refused_and_free_their_slot(base: str) -> None:
    """More upgrade attempts from one address than it may hold requests at once: each is refused with
    a 4xx (no 101), and the address is still served afterwards."""
    port = int(base.rsplit(":", 1)[1])
    for _ in range(40):
        reply = upgrade(port, "127.0.0.77")
        assert reply.startswith(b"HTTP/1.1 4") and b" 429 " not in reply[:20], reply[:200]
    status, _, body = request(f"{base}/healthz", source="127.0.0.77", timeout=5)
    assert status == 200, (status, body[:200])


@pytest.mark.parametrize("path", ["/healthz/", "/api/models/", "/static", "/healthz/?a=1"])
def test_redirects_never_name_a_host_the_client_gave(base: str, path: str) -> None:
    """A path with (or without) a stray trailing slash is redirected relatively, whatever Host says."""
    status, headers, _ = request(base + path, headers={"Host": "evil.example"}, timeout=5)
    if status in (301, 302, 303, 307, 308):
        location = headers["location"]
        assert "evil" not in location and location.startswith("/") and not location.startswith("//"), location
        assert request(base + location, timeout=5)[0] in (200, 404)
    else:
        assert status == 404


@pytest.mark.parametrize("path", ["//evil.example/healthz/", "/\\evil.example/healthz/"])
def test_a_redirect_never_becomes_protocol_relative(base: str, path: str) -> None:
    status, headers, _ = request(base + path, timeout=5)
    location = headers.get("location", "")
    assert not location.startswith(("//", "/\\")) and "://" not in location, (status, location)


def test_refusals_say_why_in_one_line(base: str) -> None:
    """A refusal made before the app (here: an upgrade) is still a one-line JSON reason."""
    reply = upgrade(int(base.rsplit(":", 1)[1]), "127.0.0.78")
    body = reply.split(b"\r\n\r\n", 1)[1]
    assert "\n" not in json.loads(body)["error"]
