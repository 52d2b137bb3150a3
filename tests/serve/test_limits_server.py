"""Connection and cost limits (facegan/serve/limits.py, guard.py) against a real server process."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.serve.helpers import _vm_kib, get_ok, request, server_process


def test_slow_loris_does_not_lock_others_out(models: dict[str, Path], tmp_path: Path) -> None:
    """300 connections from one address that never finish their request line: another client, and
    the loris's own address too, are served at once (a connection without a whole head is not a
    request, so it holds no slot), and the stalled ones are closed after --header-timeout.
    Many addresses at once: tests/serve/test_serve_attacks.py."""
    with server_process(models, tmp_path / "server.log", ["--header-timeout", "2"]) as (base, _):
        port = int(base.rsplit(":", 1)[1])
        stalled: list[socket.socket] = []
        try:
            for _ in range(300):
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                stalled.append(sock)
                sock.sendall(b"GET /api/face.png?seed=1 HT")
            t0 = time.monotonic()
            for source in ("127.0.0.2", "127.0.0.1"):
                status, _, body = request(f"{base}/healthz", source=source, timeout=5)
                assert status == 200, (source, status, body[:200])
            assert time.monotonic() - t0 < 2
            sock = stalled[0]
            sock.settimeout(8)  # --header-timeout 2, with room for a busy machine
            t0 = time.monotonic()
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(4096) == b""  # closed by the server, not by our timeout
            assert time.monotonic() - t0 < 6
        finally:
            for sock in stalled:
                sock.close()


def test_expensive_requests_are_admitted_by_budget(models: dict[str, Path], tmp_path: Path) -> None:
    """24 of the most expensive GIFs at once, from 8 client addresses: some get a 429 with
    Retry-After, /healthz keeps answering quickly, and time and memory stay bounded."""
    gif = "/api/interpolate.gif?to=999&frames=60&size=512&resample=lanczos&model=tiny64&from="
    with server_process(models, tmp_path / "server.log") as (base, proc):
        get_ok(f"{base}{gif}0")  # warm up (allocators, thread pools) before measuring memory
        rss0 = _vm_kib(proc.pid, "VmRSS")
        stop = threading.Event()
        health: list[float] = []

        def poll_health() -> None:
            while not stop.is_set():
                t0 = time.perf_counter()
                assert request(f"{base}/healthz", source="127.0.0.99", timeout=10)[0] == 200
                health.append(time.perf_counter() - t0)
                time.sleep(0.05)

        def one(i: int) -> tuple[int, dict[str, str], bytes]:
            return request(f"{base}{gif}{i + 1}", source=f"127.0.0.{10 + i % 8}", timeout=60)

        poller = threading.Thread(target=poll_health, daemon=True)
        poller.start()
        t0 = time.perf_counter()
        try:
            with ThreadPoolExecutor(24) as pool:
                results = list(pool.map(one, range(24)))
        finally:
            stop.set()
            poller.join(15)
        wall = time.perf_counter() - t0
        peak_growth_mb = (_vm_kib(proc.pid, "VmHWM") - rss0) / 1024
    statuses = [status for status, _, _ in results]
    print(
        f"\nbudget: {statuses.count(200)} × 200, {statuses.count(429)} × 429 in {wall:.1f}s; "
        f"/healthz max {max(health) * 1000:.0f} ms over {len(health)} polls; "
        f"peak RSS +{peak_growth_mb:.0f} MB"
    )
    assert set(statuses) <= {200, 429}, statuses
    assert statuses.count(200) >= 1 and statuses.count(429) >= 1, statuses
    for status, headers, body in results:
        if status == 429:
            assert int(headers["retry-after"]) >= 1
            assert "\n" not in body.decode().strip()
            assert list(json.loads(body)) == ["error"]
    assert health and max(health) < 3.0, health
    assert wall < 60
    assert peak_growth_mb < 600


def test_a_client_that_stops_reading_is_dropped(models: dict[str, Path], tmp_path: Path) -> None:
    """A response the client does not read is dropped after --send-timeout, freeing its memory."""
    gif = "/api/interpolate.gif?from=1&to=2&frames=60&size=512&resample=lanczos&model=tiny64"
    log = tmp_path / "server.log"
    with server_process(models, log, ["--send-timeout", "1"]) as (base, _):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # so the server's buffer fills
            sock.settimeout(30)
            sock.connect(("127.0.0.1", int(base.rsplit(":", 1)[1])))
            sock.sendall(f"GET {gif} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
            deadline = time.monotonic() + 30
            while "client read nothing" not in log.read_text():
                assert time.monotonic() < deadline, "the stalled response was never dropped"
                time.sleep(0.2)
            time.sleep(3)  # the kernel aborts at its next zero-window probe after the deadline
            got = bytearray()
            with contextlib.suppress(ConnectionResetError):
                while chunk := sock.recv(1 << 16):
                    got += chunk
        head, _, body = bytes(got).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        length = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
        assert length and len(body) < int(length[1])
        assert get_ok(f"{base}/healthz")  # and the server carries on


def test_behind_a_proxy_limits_follow_x_forwarded_for(models: dict[str, Path], tmp_path: Path) -> None:
    """With --forwarded-allow-ips the proxy's idle connections hold nothing (it carries many clients)
    and the cost budget is kept per X-Forwarded-For client."""
    gif = "/api/interpolate.gif?to=999&frames=60&size=512&resample=lanczos&model=tiny64&from="
    flags = ["--forwarded-allow-ips", "127.0.0.1", "--requests-per-client", "4"]
    with server_process(models, tmp_path / "server.log", flags) as (base, _):
        port = int(base.rsplit(":", 1)[1])
        idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(8)]
        try:
            assert get_ok(f"{base}/healthz")  # 8 open connections, 4 requests per client: not requests

            def one(args: tuple[int, str]) -> int:
                return request(f"{base}{gif}{args[0]}", headers={"X-Forwarded-For": args[1]})[0]

            with ThreadPoolExecutor(4) as pool:
                two_clients = list(pool.map(one, [(1, "198.51.100.1"), (2, "198.51.100.2")]))
                one_client = list(pool.map(one, [(i, "198.51.100.3") for i in range(3, 7)]))
        finally:
            for sock in idle:
                sock.close()
    assert two_clients == [200, 200]  # each within its own share
    assert 429 in one_client and 200 in one_client  # one client's share holds one such GIF
