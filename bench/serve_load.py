"""Loopback load test of `facegan serve`: requests/s and latency percentiles, 1 worker vs N, and a soak.

    python bench/serve_load.py                                   # shipped celeba64, workers 1 and 2
    python bench/serve_load.py --workers 1 2 4 --requests 400 --clients 8 --query "size=512&resample=lanczos"
    python bench/serve_load.py --soak 600 --clients 2            # 10 minutes of mixed traffic, RSS tracked

For each worker count it starts the real CLI (`facegan serve --pretrained celeba64 --workers W`) on a
free 127.0.0.1 port, waits for /healthz, warms up, then sends `--requests` GETs of
/api/face.png?seed=N&<query> (N = 0, 1, 2, ...: every request really draws and encodes a face) from
`--clients` threads, each on a fresh connection, and stops the server. Bounded: every request has a
30 s timeout and the server 60 s to start.

`--soak S` instead runs one server (the first `--workers` value) for S seconds under a closed loop of
`--clients` threads sending a fixed mix (MIX below: new and repeated seeds, conditional requests, grids,
small walks, the page, errors on purpose). Once a second it samples the resident memory (VmRSS) of the
server's whole process tree (the server and any worker processes); it prints one JSON line per minute
(requests, errors, p50/p95/p99, peak tree RSS that minute) and a summary: tree RSS after warm-up
("before"), the peak of the first and of the last minute, at the end ("after"), and the kernel's
high-water mark (VmHWM) summed over the tree. Without --soak nothing of this runs.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request(
    port: int, path: str, method: str = "GET", headers: dict[str, str] | None = None, timeout: float = 30
) -> tuple[int, float, dict[str, str], bytes]:
    """One request on a fresh connection: (status, seconds, headers, body)."""
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, time.perf_counter() - t0, dict(resp.getheaders()), body
    finally:
        conn.close()


def get(port: int, path: str) -> tuple[int, float]:
    status, seconds, _, _ = request(port, path)
    return status, seconds


@contextlib.contextmanager
def serving(
    model: str = "celeba64", workers: int = 1, extra: tuple[str, ...] = (), log: Path | None = None
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """The real `facegan serve` on a free loopback port, up (answering /healthz) within 60 s; stopped
    (SIGTERM, then SIGKILL after 30 s) on exit. Its output (log and access log) goes to `log`, else
    nowhere."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "facegan",
        "serve",
        "--pretrained",
        model,
        "--port",
        str(port),
        "--device",
        "cpu",
        "--workers",
        str(workers),
        *extra,
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    with contextlib.ExitStack() as stack:
        err = stack.enter_context(open(log, "wb")) if log else subprocess.DEVNULL
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env={**env, "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if get(port, "/healthz")[0] == 200:
                        break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"facegan serve ({workers} workers) did not start")
                time.sleep(0.2)
            yield port, proc
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def pct(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def measure(workers: int, requests: int, clients: int, model: str, query: str) -> dict[str, float]:
    with serving(model, workers) as (port, _):
        extra = f"&{query}" if query else ""
        for i in range(4 * clients):  # warm-up: thread pools, allocators, every worker
            get(port, f"/api/face.png?seed={10**9 + i}{extra}")
        paths = [f"/api/face.png?seed={i}{extra}" for i in range(requests)]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(lambda p: get(port, p), paths))
        wall = time.perf_counter() - t0
    statuses = [s for s, _ in results]
    lat = sorted(t * 1000 for _, t in results)
    return {
        "workers": workers,
        "ok": statuses.count(200),
        "requests": requests,
        "wall_s": round(wall, 2),
        "req_per_s": round(requests / wall, 1),
        "p50_ms": round(statistics.median(lat), 1),
        "p95_ms": round(pct(lat, 0.95), 1),
        "p99_ms": round(pct(lat, 0.99), 1),
    }


# ----------------------------------------------------------------------------- soak


def tree_pids(root: int) -> list[int]:
    """`root` and all its descendants, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # exited meanwhile
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the name in (...) may hold spaces
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def tree_memory(root: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in bytes, summed over the process tree of `root`."""
    rss = hwm = 0
    for pid in tree_pids(root):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss += int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                hwm += int(line.split()[1]) * 1024
    return rss, hwm


# (weight, what, path template): {s} a fresh seed, {r} a seed already served (so its ETag is known).
MIX = [
    (40, "face, new seed", "/api/face.png?seed={s}"),
    (10, "face, random", "/api/face.png"),
    (10, "face, repeated seed, If-None-Match", "/api/face.png?seed={r}"),
    (10, "face 256 px lanczos", "/api/face.png?seed={s}&size=256&resample=lanczos"),
    (8, "grid of 16", "/api/grid.png?seed={s}&n=16"),
    (4, "walk, 8 frames", "/api/interpolate.gif?from={s}&to={r}&frames=8"),
    (8, "page", "/?seed={s}"),
    (5, "healthz / models", "/api/models"),
    (5, "bad input on purpose (4xx expected)", "/api/face.png?seed=-{s}"),
]


def soak(
    seconds: float,
    clients: int,
    workers: int,
    model: str,
    seed: int = 0,
    warmup: int = 20,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Mixed closed-loop traffic for `seconds`; latency, errors and the server tree's memory."""
    weights = [w for w, _, _ in MIX]
    lock = threading.Lock()
    known: dict[int, str] = {}  # seed -> ETag, for conditional requests
    samples: list[tuple[float, int]] = []  # (t, tree RSS)
    done: list[tuple[float, float, int, str]] = []  # (t end, seconds, status, what)
    stop = threading.Event()

    with serving(model, workers) as (port, proc):
        for i in range(warmup):  # warm-up: every route, thread pools, allocators
            for _, _, path in MIX[:-1]:
                request(port, path.format(s=10**12 + i, r=10**12))
        t0 = time.monotonic()
        before, _ = tree_memory(proc.pid)

        def sampler() -> None:
            while not stop.wait(1.0):
                samples.append((time.monotonic() - t0, tree_memory(proc.pid)[0]))

        def client(k: int) -> None:
            local = random.Random(seed * 1000 + k)
            n = 0
            while time.monotonic() - t0 < seconds:
                _, what, path = local.choices(MIX, weights)[0]
                n += 1
                s = 10**6 * (k + 1) + n
                with lock:
                    r = local.choice(list(known)) if known else 10**12
                    tag = known.get(r)
                headers = {"If-None-Match": tag} if tag and "If-None-Match" in what else {}
                try:
                    status, secs, hdrs, _ = request(port, path.format(s=s, r=r), headers=headers)
                except OSError as err:  # a refused/reset/timed-out connection is an error too
                    status, secs, hdrs = -1, 0.0, {}
                    what = f"{what}: {type(err).__name__}"
                if (
                    "seed={s}" in path
                    and status == 200
                    and path.startswith("/api/face.png")
                    and "etag" in {h.lower() for h in hdrs}
                ):
                    with lock:
                        if len(known) < 5000:
                            known[s] = next(v for h, v in hdrs.items() if h.lower() == "etag")
                with lock:
                    done.append((time.monotonic() - t0, secs, status, what))

        sampling = threading.Thread(target=sampler, daemon=True)
        sampling.start()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(client, range(clients)))
        stop.set()
        sampling.join()
        after, hwm = tree_memory(proc.pid)
        alive = proc.poll() is None

    def expected(status: int, what: str) -> bool:
        if what.startswith("bad input"):
            return status == 422
        return status in (200, 304)

    minutes = []
    for m in range(int(-(-seconds // 60))):
        rows = [d for d in done if m * 60 <= d[0] < (m + 1) * 60]
        lat = sorted(d[1] * 1000 for d in rows if d[2] > 0)
        rss = [r for t, r in samples if m * 60 <= t < (m + 1) * 60]
        minutes.append(
            {
                "minute": m + 1,
                "requests": len(rows),
                "unexpected": sum(not expected(s, w) for _, _, s, w in rows),
                "p50_ms": round(pct(lat, 0.5), 1),
                "p99_ms": round(pct(lat, 0.99), 1),
                "peak_rss_mb": round(max(rss, default=0) / 2**20, 1),
            }
        )
        say(json.dumps(minutes[-1]))
    lat = sorted(d[1] * 1000 for d in done if d[2] > 0)  # answered requests only
    by_status: dict[str, int] = {}
    for _, _, s, _ in done:
        by_status[str(s)] = by_status.get(str(s), 0) + 1
    unexpected = [(s, w) for _, _, s, w in done if not expected(s, w)]
    summary = {
        "seconds": seconds,
        "clients": clients,
        "workers": workers,
        "model": model,
        "requests": len(done),
        "req_per_s": round(len(done) / seconds, 1),
        "by_status": by_status,
        "unexpected": len(unexpected),
        "unexpected_examples": sorted(set(map(str, unexpected)))[:5],
        "server_errors_5xx": sum(1 for _, _, s, _ in done if s >= 500),
        "p50_ms": round(pct(lat, 0.5), 1),
        "p95_ms": round(pct(lat, 0.95), 1),
        "p99_ms": round(pct(lat, 0.99), 1),
        "max_ms": round(lat[-1], 1) if lat else None,
        "rss_before_mb": round(before / 2**20, 1),
        "rss_peak_first_minute_mb": minutes[0]["peak_rss_mb"] if minutes else None,
        "rss_peak_last_minute_mb": minutes[-1]["peak_rss_mb"] if minutes else None,
        "rss_peak_mb": round(max((r for _, r in samples), default=0) / 2**20, 1),
        "rss_after_mb": round(after / 2**20, 1),
        "hwm_sum_mb": round(hwm / 2**20, 1),
        "server_alive_at_end": alive,
        "minutes": minutes,
    }
    say(json.dumps(summary))
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--model", default="celeba64", help="a shipped generator")
    ap.add_argument("--query", default="", help="extra query parameters, e.g. size=512&resample=lanczos")
    ap.add_argument(
        "--soak",
        type=float,
        metavar="S",
        help="soak for S seconds instead (one server, the "
        "first --workers value; mixed traffic; memory of the server tree sampled each second)",
    )
    ap.add_argument("--json", help="--soak: also write the summary (and per-minute rows) here")
    args = ap.parse_args()
    if args.soak:
        summary = soak(args.soak, args.clients, args.workers[0], args.model)
        if args.json:
            Path(args.json).write_text(json.dumps(summary, indent=1))
        return
    for w in args.workers:
        print(json.dumps(measure(w, args.requests, args.clients, args.model, args.query)), flush=True)


if __name__ == "__main__":
    main()
