"""Slow clients from many addresses against ASGI servers, each configured through its public options only.

    OMP_NUM_THREADS=1 python bench/slow_clients.py                  # uvicorn, hypercorn, granian
    OMP_NUM_THREADS=1 python bench/slow_clients.py --servers facegan  # `facegan serve` itself

For each server: the shipped celeba64 app (facegan.serve.run:worker_app) on 127.0.0.1; `--conns`
connections from `--addresses` loopback addresses (127.0.1.1, 127.0.1.2 …) each send the start of a
request head and then wait; then 10 real clients, each from its own address, ask for /healthz at
once. Printed: how many real clients got a 200 and how long the last took, how many of the stalled
connections the server had closed `--timeout` + 2 s later, and the server's resident memory. This is
the measurement by which `facegan serve` picked its HTTP server (RELIABILITY.md, section (d)).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PARTIAL = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Wait: "  # a head that never ends


def commands(server: str, port: int, timeout: float) -> list[str]:
    """The command starting `server` with the options that bear on slow clients."""
    py, app = sys.executable, "facegan.serve.run:worker_app"
    if server == "uvicorn":  # no option bounds the time to send a head; limit_concurrency counts connections
        return [
            py,
            "-m",
            "uvicorn",
            app,
            "--factory",
            "--port",
            str(port),
            "--limit-concurrency",
            "256",
            "--timeout-keep-alive",
            str(int(timeout)),
            "--log-level",
            "warning",
        ]
    if server == "hypercorn":  # keep-alive: a connection's idle time, from connecting until a whole head
        return [
            py,
            "-m",
            "hypercorn",
            f"{app}()",
            "--bind",
            f"127.0.0.1:{port}",
            "--keep-alive",
            str(int(timeout)),
            "--read-timeout",
            str(int(timeout)),
            "--log-level",
            "warning",
        ]
    if server == "granian":  # backpressure counts requests in flight; a header read timeout
        return [
            py,
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--factory",
            app,
            "--port",
            str(port),
            "--backpressure",
            "256",
            "--http1-header-read-timeout",
            str(int(timeout * 1000)),
            "--log-level",
            "warning",
        ]
    if server == "facegan":
        return [
            py,
            "-m",
            "facegan",
            "serve",
            "--pretrained",
            "celeba64",
            "--device",
            "cpu",
            "--port",
            str(port),
            "--header-timeout",
            str(timeout),
        ]
    raise SystemExit(f"unknown server {server!r}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def healthz(port: int, source: str, timeout: float = 10.0) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(source, 0))
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status
    except OSError:
        return 0
    finally:
        conn.close()


def rss_mb(pid: int) -> float:
    """Resident memory of `pid` and its children, in MB."""
    pids = [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]
    total = 0
    for p in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def closed_by_server(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(65536, socket.MSG_PEEK) is not None  # data (a 408) or b"" (closed)
    except BlockingIOError:
        return False
    except OSError:
        return True


def measure(server: str, conns: int, addresses: int, timeout: float) -> dict[str, Any]:
    port = free_port()
    spec = {
        "sources": {"celeba64": str(REPO / "facegan/pretrained_models/celeba64.safetensors")},
        "device": "cpu",
        "amp": "off",
        "workers": 1,
        "limits": {"forwarded_allow_ips": []},
    }
    env = {**os.environ, "PYTHONPATH": str(REPO), "FACEGAN_SERVE_WORKER": json.dumps(spec)}
    proc = subprocess.Popen(
        commands(server, port, timeout),
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stalled: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 60
        while healthz(port, "127.0.0.1", 2) != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{server} did not start")
            time.sleep(0.2)
        rss0 = rss_mb(proc.pid)
        for i in range(conns):
            sock = socket.socket()
            sock.bind((f"127.0.1.{1 + i % addresses}", 0))
            with contextlib.suppress(OSError):
                sock.connect(("127.0.0.1", port))
                sock.sendall(PARTIAL)
            stalled.append(sock)
        time.sleep(0.5)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(10) as pool:
            statuses = list(pool.map(lambda i: healthz(port, f"127.0.0.{2 + i}"), range(10)))
        served_s = time.perf_counter() - t0
        rss_attack = rss_mb(proc.pid)
        time.sleep(max(0.0, timeout + 2 - served_s))
        closed = sum(closed_by_server(s) for s in stalled)
        after = healthz(port, "127.0.0.20")
        return {
            "server": server,
            "real_200": statuses.count(200),
            "statuses": sorted(set(statuses)),
            "all_answered_s": round(served_s, 2),
            "stalled_closed": closed,
            "stalled": conns,
            "healthz_after": after,
            "rss_before_mb": round(rss0, 1),
            "rss_attack_mb": round(rss_attack, 1),
        }
    finally:
        for sock in stalled:
            sock.close()
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--servers", default="uvicorn,hypercorn,granian")
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--addresses", type=int, default=30)
    ap.add_argument("--timeout", type=float, default=3.0, help="each server's header/idle timeout, s")
    args = ap.parse_args()
    for server in args.servers.split(","):
        print(json.dumps(measure(server, args.conns, args.addresses, args.timeout)), flush=True)


if __name__ == "__main__":
    main()
