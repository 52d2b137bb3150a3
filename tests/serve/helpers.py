"""Helpers for the serve tests: a real server process on a free loopback port, spoken to over HTTP.

The server is started by `server_command`, the one place to change when the CLI takes over.
"""

from __future__ import annotations

import http.client
import io
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from facegan.config.schema import ModelConfig
from facegan.networks.checkpoint import export_generator
from facegan.networks.dcgan import DCGANGenerator
from facegan.networks.factory import build_models
from facegan.sampling.directions import Directions, sidecar

REPO = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 60.0
# tiny64 stores a display truncation (the page's and the API's default variety for it); tiny32 none.
TINY64_DISPLAY = 1.5


# ----------------------------------------------------------------------------- server helpers


def server_command(models: dict[str, Path], port: int, extra: Sequence[str] = ()) -> list[str]:
    """The real CLI command that starts the server, with `extra` flags."""
    sources = {name: str(path) for name, path in models.items()}
    flags = [a for n, p in sources.items() for a in ("--checkpoint", f"{n}={p}")]
    return [sys.executable, "-m", "facegan", "serve", *flags, "--port", str(port), "--device", "cpu", *extra]


def free_port() -> int:
    """A loopback port nobody listens on right now (the OS picks it for a socket bound to 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_models(folder: Path) -> dict[str, Path]:
    """Two tiny exported generators: 32 px / latent 100 without a display truncation (the full
    distribution by default), and 64 px / latent 16 that stores TINY64_DISPLAY."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, cfg, seed in (
        ("tiny32", ModelConfig(size=32, ngf=8, ndf=8), 0),
        ("tiny64", ModelConfig(size=64, ngf=8, ndf=8, latent_dim=16), 1),
    ):
        g, _ = build_models(cfg, seed=seed)
        if name == "tiny64":
            g.display_truncation = TINY64_DISPLAY  # export_generator stores it in the metadata
        out[name] = export_generator(with_contrast(g), g.cfg, folder / f"{name}.safetensors")
    # tiny64 has two attribute edits beside its weights (facegan.edits), as the shipped models do.
    vectors = F.normalize(torch.randn(2, 16, generator=torch.Generator().manual_seed(5)), dim=1)
    Directions(["Smiling", "Blond_Hair"], vectors, torch.full((2, 2), 3.0)).save(sidecar(out["tiny64"]))
    return out


def with_contrast(g: DCGANGenerator) -> DCGANGenerator:
    """An untrained G draws near-uniform grey (tanh of tiny values); scale its last layer so the
    pre-tanh values have unit spread and the test faces differ visibly across pixels and seeds."""
    g.eval()
    last = g.main[-2]
    with torch.no_grad():
        z = torch.randn(8, g.cfg.latent_dim, 1, 1, generator=torch.Generator().manual_seed(0))
        pre = g.main[:-1](z)
        last.weight.mul_(1.0 / pre.std().clamp_min(1e-8))
    return g


def fetch(url: str, timeout: float = 30.0) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, body) of a GET, 4xx/5xx included."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def request(
    url: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    source: str | None = None,
    timeout: float = 30.0,
) -> tuple[int, dict[str, str], bytes]:
    """(status, lower-case headers, body) of one request on a fresh connection; `source` is the
    client address to connect from (any 127.x.y.z works on Linux loopback), to play another client."""
    m = re.fullmatch(r"http://([^/:]+):(\d+)(/.*)", url)
    assert m, url
    conn = http.client.HTTPConnection(
        m[1], int(m[2]), timeout=timeout, source_address=(source, 0) if source else None
    )
    try:
        conn.request(method, m[3], headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


@contextmanager
def running_server(models: dict[str, Path], log_path: Path, extra: Sequence[str] = ()) -> Iterator[str]:
    """Start the server process, wait for /healthz, yield its base URL, always stop it."""
    with server_process(models, log_path, extra) as (base, _):
        yield base


@contextmanager
def server_process(
    models: dict[str, Path], log_path: Path, extra: Sequence[str] = ()
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """running_server, yielding the process too."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    # Output goes to a file, not a pipe: an unread pipe fills up and would block the server.
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            server_command(models, port, extra), cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                if fetch(f"{base}/healthz", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"no /healthz after {STARTUP_TIMEOUT_S}s:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def image(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def get_ok(url: str) -> tuple[dict[str, str], bytes]:
    status, headers, body = fetch(url)
    assert status == 200, (url, status, body[:300])
    return headers, body


def _vm_kib(pid: int, field: str) -> int:
    """A memory figure (VmRSS, VmHWM) of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")
