"""Running the server: `facegan serve`'s listening socket, hypercorn (one process, or `--workers N`
sharing the port), and the factory each worker process builds its app with.

hypercorn was chosen by measurement (bench/slow_clients.py, RELIABILITY.md section (d)): configured
through its public options only, it was the one server that kept serving real clients within 2 s
while 1000 connections from 30 addresses sat on unfinished request heads, and closed them all."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import os
import socket
from dataclasses import asdict
from typing import cast

import hypercorn.asyncio
import hypercorn.run
import torch
from fastapi import FastAPI
from hypercorn.config import Config
from hypercorn.typing import ASGIFramework

from facegan.errors import FaceganError
from facegan.runtime.device import pick_device
from facegan.sampling.generate import load_generator
from facegan.serve.app import build_app
from facegan.serve.config import DEVICES, ServeConfig
from facegan.serve.guard import head_limit
from facegan.serve.limits import ServeLimits

WORKER_ENV = "FACEGAN_SERVE_WORKER"  # how `--workers` processes learn what to load
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


def server_config(limits: ServeLimits, sock: socket.socket, workers: int = 1) -> Config:
    """hypercorn's settings for `limits`, serving on the listening socket `sock`: its public options
    only (the rest of the defence is ASGI middleware, facegan/serve/guard.py)."""
    config = Config()
    config.bind = [f"fd://{os.dup(sock.fileno())}"]  # hypercorn closes the one it is given
    config.workers = workers
    config.application_path = f"{__name__}:worker_app()"  # what each --workers process builds
    # hypercorn's idle timer runs from connecting (or from the previous answer) until a whole request
    # head has arrived, and is not reset by each byte: it is the header deadline of slow clients.
    config.keep_alive_timeout = min(limits.header_timeout, limits.keep_alive)
    config.read_timeout = math.ceil(limits.header_timeout)  # a body that stops arriving
    config.h11_max_incomplete_size = head_limit(limits)  # a longer head gets hypercorn's 431
    config.graceful_timeout = GRACEFUL_SHUTDOWN_S
    config.include_server_header = False
    config.accesslog = "-"
    config.errorlog = "-"
    config.loglevel = "INFO"
    # A response the client does not read is dropped by the kernel after send_timeout: data left
    # unacknowledged (also behind a zero window) that long aborts the connection. Accepted sockets
    # inherit it from the listening one. Linux only; elsewhere the send deadline is only logged.
    if hasattr(socket, "TCP_USER_TIMEOUT"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(limits.send_timeout * 1000))
    return config


def serve(cfg: ServeConfig) -> None:
    """Load every model `cfg` names (checkpoint .pt, run folder or exported .safetensors) once, then
    serve them on http://host:port/ until interrupted; `cfg.workers` processes share the port, each
    with its own copy of the generators and its own `cfg.limits`."""
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
    print(
        f"facegan: serving {summary} on {dev}{procs} at http://{shown}:{bound_port}/ (Ctrl-C to stop)",
        flush=True,
    )
    if not _is_loopback(host):
        print(
            f"facegan: note: {host} is not a loopback address; anyone who can reach this "
            f"machine can use the server",
            flush=True,
        )
    config = server_config(limits, sock, workers)
    try:
        if workers == 1:
            app = build_app(generators, dev, sources=sources, limits=limits)
            # Without a shutdown trigger hypercorn stops gracefully on SIGINT and SIGTERM.
            # hypercorn types the app with its own scope TypedDicts, starlette with MutableMappings: the
            # same ASGI callable, which the two type systems cannot match.
            asyncio.run(hypercorn.asyncio.serve(cast(ASGIFramework, app), config))
        else:
            del generators  # each worker loads its own
            os.environ[WORKER_ENV] = json.dumps(
                {
                    "sources": sources,
                    "device": str(dev),
                    "amp": cfg.amp,
                    "workers": workers,
                    "limits": asdict(limits),
                }
            )
            # hypercorn starts each worker with multiprocessing's spawn (torch and its thread pools do
            # not survive fork) on the one listening socket, and stops them all on SIGINT/SIGTERM.
            if hypercorn.run.run(config) != 0:
                raise FaceganError("a worker process failed; see the log above")
    finally:
        sock.close()


def worker_app() -> FastAPI:
    """The app of one `--workers` process (hypercorn calls this factory in each worker)."""
    spec = json.loads(os.environ[WORKER_ENV])
    if "OMP_NUM_THREADS" not in os.environ:
        # N processes with a thread per core each would oversubscribe the CPU N times over.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // spec["workers"]))
    raw = spec["limits"]
    limits = ServeLimits(**{**raw, "forwarded_allow_ips": tuple(raw["forwarded_allow_ips"])})
    dev = torch.device(spec["device"])
    sources: dict[str, str] = spec["sources"]
    generators = {name: load_generator(path, dev, amp=spec["amp"]) for name, path in sources.items()}
    return build_app(generators, dev, sources=sources, limits=limits)
