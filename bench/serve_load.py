"""Loopback load test of `facegan serve`: requests/s and latency percentiles, 1 worker vs N.

    python bench/serve_load.py                                   # shipped celeba64, workers 1 and 2
    python bench/serve_load.py --workers 1 2 4 --requests 400 --clients 8 --query "size=512&resample=lanczos"

For each worker count it starts the real CLI (`facegan serve --pretrained celeba64 --workers W`) on a
free 127.0.0.1 port, waits for /healthz, warms up, then sends `--requests` GETs of
/api/face.png?seed=N&<query> (N = 0, 1, 2, ...: every request really draws and encodes a face) from
`--clients` threads, each on a fresh connection, and stops the server. Bounded: every request has a
30 s timeout and the server 60 s to start.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(port: int, path: str) -> tuple[int, float]:
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status, time.perf_counter() - t0
    finally:
        conn.close()


def measure(workers: int, requests: int, clients: int, model: str, query: str) -> dict[str, float]:
    port = free_port()
    cmd = [sys.executable, "-m", "facegan", "serve", "--pretrained", model, "--port", str(port),
           "--device", "cpu", "--workers", str(workers)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if get(port, "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"server with {workers} workers did not start")
            time.sleep(0.2)
        extra = f"&{query}" if query else ""
        for i in range(4 * clients):  # warm-up: thread pools, allocators, every worker
            get(port, f"/api/face.png?seed={10**9 + i}{extra}")
        paths = [f"/api/face.png?seed={i}{extra}" for i in range(requests)]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(lambda p: get(port, p), paths))
        wall = time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(30)
    statuses = [s for s, _ in results]
    lat = sorted(t * 1000 for _, t in results)

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))]

    return {"workers": workers, "ok": statuses.count(200), "requests": requests, "wall_s": round(wall, 2),
            "req_per_s": round(requests / wall, 1), "p50_ms": round(statistics.median(lat), 1),
            "p95_ms": round(pct(0.95), 1), "p99_ms": round(pct(0.99), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--model", default="celeba64", help="a shipped generator")
    ap.add_argument("--query", default="", help="extra query parameters, e.g. size=512&resample=lanczos")
    args = ap.parse_args()
    for w in args.workers:
        print(json.dumps(measure(w, args.requests, args.clients, args.model, args.query)), flush=True)


if __name__ == "__main__":
    main()
