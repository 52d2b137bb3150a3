"""Running the server: `facegan serve`'s listening socket, uvicorn (one process, or `--workers N`
sharing the port), and the factory each worker process builds its app with."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from dataclasses import asdict
from typing import Any

import torch
from fastapi import FastAPI

from facegan.device import pick_device
from facegan.errors import FaceganError
from facegan.generate import load_generator
from facegan.serve.app import build_app
from facegan.serve.config import DEVICES, ServeConfig
from facegan.serve.limits import ServeLimits

WORKER_ENV = "FACEGAN_SERVE_WORKER"  # how `--workers` processes learn what to load
LIMIT_CONCURRENCY = 256  # open connections per process beyond which uvicorn answers a quick 503
GRACEFUL_SHUTDOWN_S = 10  # on SIGTERM/SIGINT, requests in flight get this long to finish


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket, so a busy port is one clear error before anything starts."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise FaceganError(f"cannot listen on host {host!r}: {err.strerror}") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
        sock.listen(2048)
    except OSError as err:
        sock.close()
        hint = "; pick another with --port" if err.errno in (98, 48) else ""
        raise FaceganError(f"cannot listen on {host}:{port}: {err.strerror or err}{hint}") from None
    sock.set_inheritable(True)
    return sock


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve(cfg: ServeConfig) -> None:
    """Load every model `cfg` names (checkpoint .pt, run folder or exported .safetensors) once, then
    serve them on http://host:port/ until interrupted; `cfg.workers` processes share the port, each
    with its own copy of the generators and its own `cfg.limits`."""
    import uvicorn  # here, so importing this module for build_app does not need the server

    from facegan.serve.conn import GuardedConfig

    sources, limits, workers, host = cfg.sources(), cfg.limits, cfg.workers, cfg.host
    dev = pick_device(cfg.device, DEVICES)
    # Loaded here even when workers will load their own: a bad checkpoint is one clear error
    # before anything starts, not a worker dying at startup.
    generators = {name: load_generator(path, dev, amp=cfg.amp) for name, path in sources.items()}
    sock = _bind(host, cfg.port)
    bound_port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    summary = ", ".join(f"{n} ({g.cfg.size}px)" for n, g in generators.items())
    procs = f", {workers} worker processes" if workers > 1 else ""
    print(f"facegan: serving {summary} on {dev}{procs} at http://{shown}:{bound_port}/ "
          f"(Ctrl-C to stop)", flush=True)
    if not _is_loopback(host):
        print(f"facegan: note: {host} is not a loopback address; anyone who can reach this "
              f"machine can use the server", flush=True)
    # limit_concurrency: beyond that many open connections new requests get a quick 503 instead of
    # queueing without bound; X-Forwarded-For is believed only from --forwarded-allow-ips.
    options: dict[str, Any] = dict(
        log_level="info", access_log=True, server_header=False, limit_concurrency=LIMIT_CONCURRENCY,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S, limits=limits,
        proxy_headers=bool(limits.forwarded_allow_ips),
        forwarded_allow_ips=list(limits.forwarded_allow_ips) or None)
    try:
        if workers == 1:
            app = build_app(generators, dev, sources=sources, budget=limits.budget())
            uvicorn.Server(GuardedConfig(app, **options)).run(sockets=[sock])
        else:
            del generators  # each worker loads its own
            _run_workers(GuardedConfig("facegan.serve.run:worker_app", factory=True, workers=workers,
                                       **options),
                         sock, {"sources": sources, "device": str(dev), "amp": cfg.amp, "workers": workers,
                                "limits": asdict(limits)})
    finally:
        sock.close()


def _run_workers(config: Any, sock: socket.socket, spec: dict[str, Any]) -> None:
    """Run `config.workers` server processes on the one listening socket `sock`.

    uvicorn's own supervisor does the work: it starts each worker with multiprocessing's spawn (a
    fresh interpreter: torch and its thread pools do not survive fork), hands it `sock` (so all
    accept on one port and the kernel spreads the connections, no SO_REUSEPORT needed), restarts a
    worker that dies, and on SIGINT/SIGTERM stops them all. It builds the app in each worker from
    an import string only, hence the factory `worker_app`, which reads what to load from the
    environment the workers inherit."""
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    os.environ[WORKER_ENV] = json.dumps(spec)
    supervisor = Multiprocess(config, sockets=[sock])
    supervisor.run()
    if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
        raise FaceganError("a worker process failed to start; see the log above")


def worker_app() -> FastAPI:
    """The app of one `--workers` process (uvicorn calls this factory in each worker)."""
    spec = json.loads(os.environ[WORKER_ENV])
    if "OMP_NUM_THREADS" not in os.environ:
        # N processes with a thread per core each would oversubscribe the CPU N times over.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // spec["workers"]))
    raw = spec["limits"]
    limits = ServeLimits(**{**raw, "forwarded_allow_ips": tuple(raw["forwarded_allow_ips"])})
    dev = torch.device(spec["device"])
    sources: dict[str, str] = spec["sources"]
    generators = {name: load_generator(path, dev, amp=spec["amp"]) for name, path in sources.items()}
    return build_app(generators, dev, sources=sources, budget=limits.budget())
