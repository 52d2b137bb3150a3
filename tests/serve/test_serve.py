"""Tests for the face server: a real server process on a free loopback port, spoken to over HTTP.

The server is started by `server_command`, the one place to change when the CLI takes over.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from facegan.config.schema import ModelConfig
from facegan.errors import FaceganError
from facegan.networks.checkpoint import export_generator
from facegan.networks.dcgan import DCGANGenerator
from facegan.networks.factory import build_models
from facegan.sampling.directions import Directions, sidecar
from facegan.sampling.generate import MAX_SEED, faces, load_generator, write_faces
from facegan.serve.cache import IMMUTABLE, model_version

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


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def server(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_server(models, tmp_path_factory.mktemp("server") / "server.log") as base:
        yield base


def image(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def get_ok(url: str) -> tuple[dict[str, str], bytes]:
    status, headers, body = fetch(url)
    assert status == 200, (url, status, body[:300])
    return headers, body


# ----------------------------------------------------------------------------- images


def test_healthz(server: str) -> None:
    headers, body = get_ok(f"{server}/healthz")
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["ok"] is True


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("seed=1&model=tiny32", 32),
        ("seed=1&model=tiny64", 64),
        ("seed=1&model=tiny32&size=native", 32),
        ("seed=1&model=tiny32&size=512", 512),
        ("seed=1&model=tiny64&size=32", 32),  # shrinking works too
        ("seed=1", 32),  # the first model is the default
    ],
)
def test_face_png_has_requested_size(server: str, query: str, expected: int) -> None:
    headers, body = get_ok(f"{server}/api/face.png?{query}")
    assert headers["content-type"] == "image/png"
    assert body.startswith(b"\x89PNG\r\n\x1a\n")
    im = image(body)
    assert (im.format, im.mode, im.size) == ("PNG", "RGB", (expected, expected))
    assert headers["x-seed"] == "1"


def test_same_seed_same_bytes_different_seed_different_bytes(server: str) -> None:
    for model in ("tiny32", "tiny64"):
        a = get_ok(f"{server}/api/face.png?seed=42&model={model}&size=128")[1]
        b = get_ok(f"{server}/api/face.png?seed=42&model={model}&size=128")[1]
        c = get_ok(f"{server}/api/face.png?seed=43&model={model}&size=128")[1]
        assert a == b
        assert a != c
    # Same seed, other model: another face.
    assert (
        get_ok(f"{server}/api/face.png?seed=42&model=tiny32&size=64")[1]
        != get_ok(f"{server}/api/face.png?seed=42&model=tiny64&size=64")[1]
    )


def test_largest_seed_is_accepted(server: str) -> None:
    headers, body = get_ok(f"{server}/api/face.png?seed={MAX_SEED}")
    assert headers["x-seed"] == str(MAX_SEED)
    assert image(body).size == (32, 32)


def test_random_face_names_its_seed_and_the_seed_reproduces_it(server: str) -> None:
    seen = set()
    for _ in range(3):
        headers, body = get_ok(f"{server}/api/face.png?model=tiny64&size=128")
        seed = int(headers["x-seed"])
        assert 0 <= seed <= MAX_SEED
        assert headers["cache-control"] == "no-store"  # a random face must not be cached
        again = get_ok(f"{server}/api/face.png?seed={seed}&model=tiny64&size=128")[1]
        assert again == body
        seen.add(seed)
    assert len(seen) == 3, "three random faces should have three different seeds"


def test_served_face_is_the_face_generate_writes(
    server: str, models: dict[str, Path], tmp_path: Path
) -> None:
    """A seed names the same face in `facegan generate` and in the server (which runs batches of
    8, so allow one level of rounding where kernels round differently per batch size)."""
    g = load_generator(models["tiny64"])  # as `facegan generate` and `serve` load it (exact fp32)
    # The API's default variety is the model's display truncation; 0 = untruncated.
    for query, truncation in (("", TINY64_DISPLAY), ("&truncation=0", None), ("&truncation=1.5", 1.5)):
        (path,) = write_faces(faces(g, [7], truncation=truncation), [7], tmp_path / query)
        served = np.asarray(image(get_ok(f"{server}/api/face.png?seed=7&model=tiny64{query}")[1]))
        written = np.asarray(Image.open(path).convert("RGB"))
        assert np.abs(served.astype(int) - written.astype(int)).max() <= 1, query
    # the default really truncates: some of ten faces change (a latent may lie within ±t already)
    base = f"{server}/api/face.png?model=tiny64"
    assert any(get_ok(f"{base}&seed={s}&truncation=0")[1] != get_ok(f"{base}&seed={s}")[1] for s in range(10))


def test_upscaling_is_crisp_by_default_and_smooth_on_request(server: str) -> None:
    native = np.asarray(image(get_ok(f"{server}/api/face.png?seed=5&model=tiny32")[1]))
    big = np.asarray(image(get_ok(f"{server}/api/face.png?seed=5&model=tiny32&size=128")[1]))
    # NEAREST ×4: every 4×4 block is one native pixel.
    assert np.array_equal(big, native.repeat(4, axis=0).repeat(4, axis=1))
    smooth = get_ok(f"{server}/api/face.png?seed=5&model=tiny32&size=128&resample=lanczos")[1]
    assert image(smooth).size == (128, 128)
    assert not np.array_equal(np.asarray(image(smooth)), big)


def test_grid_png(server: str) -> None:
    headers, body = get_ok(f"{server}/api/grid.png?n=5&seed=10&model=tiny32")
    assert headers["content-type"] == "image/png"
    assert headers["x-seed"] == "10"
    im = np.asarray(image(body))
    # 5 faces → 3 columns × 2 rows of 32 px tiles with 2 px padding.
    assert im.shape == (2 * 34 + 2, 3 * 34 + 2, 3)
    # The tile at row 0, column 1 is exactly face 11.
    face11 = np.asarray(image(get_ok(f"{server}/api/face.png?seed=11&model=tiny32")[1]))
    assert np.array_equal(im[2:34, 36:68], face11)
    assert image(get_ok(f"{server}/api/grid.png?n=64&seed=0&model=tiny64")[1]).size == (530, 530)


def test_random_grid_names_its_seed(server: str) -> None:
    headers, body = get_ok(f"{server}/api/grid.png?n=4&model=tiny32")
    seed = int(headers["x-seed"])
    assert get_ok(f"{server}/api/grid.png?n=4&seed={seed}&model=tiny32")[1] == body


@pytest.mark.parametrize(("method", "truncation"), [("slerp", "0"), ("lerp", "0"), ("slerp", "1.2")])
def test_interpolate_gif(server: str, method: str, truncation: str) -> None:
    url = (
        f"{server}/api/interpolate.gif?from=3&to=9&frames=7&model=tiny64&size=128&method={method}"
        f"&truncation={truncation}"
    )
    headers, body = get_ok(url)
    assert headers["content-type"] == "image/gif"
    im = Image.open(io.BytesIO(body))
    assert im.format == "GIF"
    assert im.n_frames == 7
    assert im.size == (128, 128)
    frames = []
    for i in range(im.n_frames):
        im.seek(i)
        frames.append(np.asarray(im.convert("RGB")))
    assert not np.array_equal(frames[0], frames[-1])

    # The walk starts at face 3 and ends at face 9 (up to the GIF's 256-colour palette).
    def face(seed: int) -> np.ndarray:
        url = f"{server}/api/face.png?seed={seed}&model=tiny64&size=128&truncation={truncation}"
        return np.asarray(image(get_ok(url)[1])).astype(int)

    def dist(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.abs(a.astype(int) - b).mean())

    start, end = face(3), face(9)
    assert dist(frames[0], start) < dist(frames[0], end) / 3
    assert dist(frames[-1], end) < dist(frames[-1], start) / 3
    assert get_ok(url)[1] == body  # deterministic too


def test_models_lists_every_model(server: str) -> None:
    headers, body = get_ok(f"{server}/api/models")
    assert headers["content-type"].startswith("application/json")
    listed = {m["name"]: m for m in json.loads(body)}
    assert listed["tiny32"] == {
        "name": "tiny32",
        "size": 32,
        "latent_dim": 100,
        "source": "tiny32.safetensors",
        "display_truncation": None,
        "edits": [],
    }
    assert listed["tiny64"]["size"] == 64 and listed["tiny64"]["display_truncation"] == TINY64_DISPLAY
    assert listed["tiny64"]["edits"] == ["Smiling", "Blond_Hair"]
    assert listed["tiny64"]["latent_dim"] == 16


def test_openapi_schema(server: str) -> None:
    schema = json.loads(get_ok(f"{server}/openapi.json")[1])
    for path in ("/api/face.png", "/api/grid.png", "/api/interpolate.gif", "/api/models", "/healthz"):
        assert path in schema["paths"]
    params = {p["name"]: p for p in schema["paths"]["/api/face.png"]["get"]["parameters"]}
    assert set(params) >= {"seed", "model", "size"}


# ----------------------------------------------------------------------------- the page


def test_page_shows_the_requested_face(server: str) -> None:
    headers, body = get_ok(f"{server}/?seed=123&model=tiny64")
    page = body.decode()
    assert headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in headers["content-security-policy"]
    assert (
        'id="face" class="smooth" src="/api/face.png?seed=123&amp;model=tiny64&amp;size=512'
        f'&amp;resample=lanczos&amp;truncation={TINY64_DISPLAY:g}"'
    ) in page
    assert '<span id="seed">123</span>' in page
    assert 'id="permalink" href="/?seed=123&amp;model=tiny64"' in page
    for element_id in ("new-face", "model", "walk-form", "walk-go", "variety", "upscale", "upscale-note"):
        assert f'id="{element_id}"' in page
    assert "http://" not in page and "https://" not in page, "the page must not need the network"


def test_page_escapes_what_it_echoes(server: str) -> None:
    """The page is an autoescaped template: a hostile model name echoed in the error page for `/`
    comes back as text, never as markup."""
    status, headers, body = fetch(f"{server}/?model=%3Cscript%3Ealert(1)%3C/script%3E")
    assert status == 404 and headers["content-type"].startswith("text/html")
    assert b"<script" not in body
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in body


def test_page_loads_its_css_and_script_from_static_files(server: str) -> None:
    """No inline code (the CSP allows only 'self'); the CSS and script it names are served, as
    packaged, with their types and versioned URLs."""
    from importlib import resources

    headers, body = get_ok(f"{server}/?seed=1")
    page, csp = body.decode(), headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "unsafe-inline" not in csp
    assert "<style" not in page and "style=" not in page and "<script>" not in page
    urls = re.findall(r'(?:href|src)="(/static/[^"]+)"', page)
    assert sorted(u.split("?")[0] for u in urls) == ["/static/page.css", "/static/page.js"], urls
    for url in urls:
        assert re.search(r"\?v=[0-9a-f]{12}$", url), url  # a new release is a new URL
        static_headers, static_body = get_ok(server + url.replace("&amp;", "&"))
        name = url.split("/")[-1].split("?")[0]
        assert static_body == (resources.files("facegan.serve") / "static" / name).read_bytes()
        assert static_headers["content-type"].split(";")[0] in (
            "text/css",
            "text/javascript",
            "application/javascript",
        )
        assert static_headers["x-content-type-options"] == "nosniff"
    assert fetch(f"{server}/static/nope.js")[0] == 404


def test_page_picks_a_new_face_per_load(server: str) -> None:
    seeds = set()
    for _ in range(3):
        page = get_ok(f"{server}/")[1].decode()
        seeds.add(page.split('<span id="seed">')[1].split("<")[0])
    assert len(seeds) == 3


@pytest.mark.parametrize("query", ["seed=-1", "model=nope", "seed=abc", "truncation=0.01", "resample=cubic"])
def test_page_rejects_bad_params(server: str, query: str) -> None:
    status, headers, body = fetch(f"{server}/?{query}")
    assert 400 <= status < 500
    assert headers["content-type"].startswith("text/html")
    assert b"Traceback" not in body


# ----------------------------------------------------------------------------- input safety


@pytest.mark.parametrize(
    ("path", "word"),
    [
        ("/api/face.png?seed=-1", "seed"),
        ("/api/face.png?seed=abc", "seed"),
        (f"/api/face.png?seed={MAX_SEED + 1}", "seed"),
        ("/api/face.png?seed=" + "9" * 5000, "seed"),
        ("/api/face.png?size=77", "size"),
        ("/api/face.png?size=-512", "size"),
        ("/api/face.png?model=nope", "model"),
        ("/api/face.png?model=../../etc/passwd", "model"),
        ("/api/face.png?resample=cubic", "resample"),
        ("/api/grid.png?n=1000", "n"),
        ("/api/grid.png?n=0", "n"),
        (f"/api/grid.png?n=2&seed={MAX_SEED}", "seed"),
        ("/api/interpolate.gif?from=1&to=2&frames=1000", "frames"),
        ("/api/interpolate.gif?from=1&to=2&frames=1", "frames"),
        ("/api/interpolate.gif?to=2", "from"),
        ("/api/interpolate.gif?from=1&to=x", "to"),
        ("/api/interpolate.gif?from=1&to=2&method=cubic", "method"),
        ("/api/interpolate.gif?from=1&to=2&duration=0", "duration"),
        ("/api/interpolate.gif?from=1&to=2&model=nope", "model"),
        ("/api/face.png?truncation=0.05", "truncation"),
        ("/api/face.png?truncation=9", "truncation"),
        ("/api/grid.png?truncation=-1", "truncation"),
        ("/api/interpolate.gif?from=1&to=2&truncation=nan", "truncation"),
        ("/no/such/route", "not found"),
    ],
)
def test_bad_params_give_one_line_json_4xx(server: str, path: str, word: str) -> None:
    status, headers, body = fetch(server + path)
    assert 400 <= status < 500, (status, body[:200])
    assert headers["content-type"].startswith("application/json")
    text = body.decode()
    assert "\n" not in text.strip()
    assert "Traceback" not in text and 'File "' not in text
    error = json.loads(text)
    assert list(error) == ["error"]
    assert word in error["error"].lower()


def test_load_200_requests_from_8_clients(server: str) -> None:
    """Concurrent requests all succeed, and the per-model lock keeps every face exact."""
    n_requests, n_clients = 200, 8
    urls = [
        f"{server}/api/face.png?seed={i % 20}&model={('tiny32', 'tiny64')[i % 2]}&size=128"
        for i in range(n_requests)
    ]

    def one(url: str) -> tuple[str, int, bytes, float]:
        t0 = time.perf_counter()
        status, _, body = fetch(url)
        return url, status, body, time.perf_counter() - t0

    t0 = time.perf_counter()
    with ThreadPoolExecutor(n_clients) as pool:
        results = list(pool.map(one, urls))
    wall = time.perf_counter() - t0
    assert [status for _, status, _, _ in results] == [200] * n_requests
    by_url: dict[str, set[bytes]] = {}
    for url, _, body, _ in results:
        by_url.setdefault(url, set()).add(body)
    assert all(len(bodies) == 1 for bodies in by_url.values()), "a seed gave different images"
    lat = sorted(r[3] * 1000 for r in results)
    p50, p95 = statistics.median(lat), lat[int(0.95 * len(lat)) - 1]
    print(
        f"\nload: {n_requests} requests, {n_clients} clients, {wall:.2f}s: "
        f"{n_requests / wall:.1f} req/s, p50 {p50:.1f} ms, p95 {p95:.1f} ms"
    )


# ----------------------------------------------------------------------------- in-process


def test_serve_refuses_bad_setups(
    models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from facegan.serve import ServeConfig, build_app, serve

    tiny = str(models["tiny32"])
    with pytest.raises(FaceganError, match="no models"):
        build_app({})
    monkeypatch.setattr("facegan.sharing.pretrained.available", lambda: [])
    with pytest.raises(FaceganError, match="needs a model"):
        serve(ServeConfig())
    monkeypatch.undo()
    odd = tmp_path / "my face!.safetensors"  # the name defaults to the file's stem
    odd.write_bytes(models["tiny32"].read_bytes())
    with pytest.raises(FaceganError, match="bad model name"):
        serve(ServeConfig(checkpoint=(str(odd),)))
    with pytest.raises(FaceganError, match="two models are named 'x'"):
        serve(ServeConfig(checkpoint=(f"x={tiny}", f"x={models['tiny64']}")))
    with pytest.raises(FaceganError, match="does not exist"):
        serve(ServeConfig(checkpoint=(f"x={tmp_path / 'missing.pt'}",), device="cpu"))
    with pytest.raises(FaceganError, match="device"):
        serve(ServeConfig(checkpoint=(tiny,), device="tpu"))
    if not torch.cuda.is_available():
        with pytest.raises(FaceganError, match="CUDA"):
            serve(ServeConfig(checkpoint=(tiny,), device="cuda"))
    with pytest.raises(FaceganError, match="--workers must be at least 1"):
        ServeConfig(workers=0)
    with pytest.raises(FaceganError, match="--port must be between 0 and 65535"):
        ServeConfig(port=65536)
    # A busy port is one clear error, before anything is served.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(FaceganError, match=f"cannot listen on 127.0.0.1:{port}"):
            serve(ServeConfig(checkpoint=(f"x={tiny}",), port=port, device="cpu"))


def test_serve_flags_are_the_config_fields(capsys: pytest.CaptureFixture[str]) -> None:
    """Every ServeConfig/ServeLimits field is a flag of `facegan serve`, and the flags given (only
    those) land in the config; repeated flags collect, --forwarded-allow-ips splits on commas."""
    import dataclasses

    from facegan.cli.flags import given_fields
    from facegan.cli.main import build_parser
    from facegan.serve import ServeConfig, ServeLimits

    def config(argv: list[str]) -> ServeConfig:
        args = build_parser().parse_args(["serve", *argv])
        limits = ServeLimits(**given_fields(args, ServeLimits))
        return ServeConfig(**given_fields(args, ServeConfig), limits=limits)

    run = "runs/00001-celeba/checkpoints/latest.pt"
    cfg = config(
        [
            "--checkpoint",
            "a=x.pt",
            "--checkpoint",
            run,
            "--pretrained",
            "celeba64",
            "--port",
            "0",
            "--workers",
            "2",
            "--amp",
            "off",
            "--budget-mpix",
            "8",
            "--client-budget-mpix",
            "4",
            "--forwarded-allow-ips",
            "10.0.0.1, 10.1.0.0/16",
        ]
    )
    assert cfg == ServeConfig(
        checkpoint=("a=x.pt", run),
        pretrained=("celeba64",),
        port=0,
        workers=2,
        amp="off",
        limits=ServeLimits(
            budget_mpix=8, client_budget_mpix=4, forwarded_allow_ips=("10.0.0.1", "10.1.0.0/16")
        ),
    )
    assert list(cfg.sources())[1:] == ["a", "00001-celeba"]  # after the shipped celeba64
    assert config([]) == ServeConfig()
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    serve_help = capsys.readouterr().out
    for kind in (ServeConfig, ServeLimits):
        for f in dataclasses.fields(kind):
            if f.name != "limits":
                assert f"--{f.name.replace('_', '-')}" in serve_help, f.name
    assert "(default: 64)" in serve_help and "--checkpoint [NAME=]PATH" in serve_help


def test_generator_worker_batches_exactly_and_survives_cancelled_requests(models: dict[str, Path]) -> None:
    """Jobs submitted at once from many threads come back intact and identical to a job run
    alone; a cancelled job is skipped and the worker keeps serving."""
    from facegan.sampling.generate import latents
    from facegan.serve import GeneratorWorker

    worker = GeneratorWorker(load_generator(models["tiny32"]), "t")
    try:
        seeds = list(range(30))
        alone = {s: worker.submit(latents([s], 100)).result(timeout=30) for s in seeds}
        cancelled = worker.submit(latents([99], 100))
        cancelled.cancel()
        with ThreadPoolExecutor(8) as pool:
            crowd = list(pool.map(lambda s: worker.submit(latents([s, s + 1], 100)), seeds))
        for s, fut in zip(seeds, crowd, strict=True):
            pair = fut.result(timeout=30)
            assert pair.shape == (2, 3, 32, 32)
            assert torch.equal(pair[0], alone[s][0])
            if s + 1 in alone:
                assert torch.equal(pair[1], alone[s + 1][0])
        many = worker.submit(latents(seeds, 100)).result(timeout=30)  # several padded passes
        assert torch.equal(many, torch.cat([alone[s] for s in seeds]))
    finally:
        worker.stop()


class _BrokenGenerator(DCGANGenerator):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("secret internals at /srv/weights")


def test_unexpected_errors_are_a_generic_500(caplog: pytest.LogCaptureFixture) -> None:
    """build_app's catch-all: a failing generator gives a bare 500 JSON; details only in the log."""
    from facegan.serve import ServeLimits, build_app
    from tests.serve.test_serve_guard import serving

    app = build_app({"broken": _BrokenGenerator(ModelConfig(size=32, ngf=8, ndf=8))})
    with serving(app, ServeLimits()) as port:
        status, headers, body = fetch(f"http://127.0.0.1:{port}/api/face.png?seed=1")
    assert status == 500
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body) == {"error": "internal server error"}
    assert b"secret" not in body and b"Traceback" not in body
    assert "secret internals" in caplog.text  # the operator still sees what happened


def test_page_offers_variety_and_upscaling_and_names_them_in_the_permalink(server: str) -> None:
    page = get_ok(f"{server}/?seed=12&model=tiny64")[1].decode()
    # defaults: the model's display truncation, smooth upscaling, said on the page
    assert '<option value="1.5" selected>medium (1.5, default)</option>' in page
    assert '<option value="lanczos" selected>smooth (Lanczos)</option>' in page
    assert "64×64 px face shown at 512 px with smooth Lanczos upscaling" in page
    assert f"resample=lanczos&amp;truncation={TINY64_DISPLAY:g}" in page
    crisp = get_ok(f"{server}/?seed=12&model=tiny64&truncation=0&resample=nearest")[1].decode()
    assert '<option value="0" selected>full (off)</option>' in crisp and "crisp pixels" in crisp
    assert 'id="permalink" href="/?seed=12&amp;model=tiny64&amp;truncation=0&amp;resample=nearest"' in crisp
    assert 'class="crisp"' in crisp and 'id="walk" class="crisp"' in crisp
    # the walk area stays hidden (no broken-image frame) until a walk is made
    css = get_ok(server + re.findall(r'href="(/static/page.css[^"]*)"', page)[0])[1].decode()
    assert "#walk[hidden] { display: none; }" in css and 'width="256" height="256" hidden>' in page


def test_each_served_model_defaults_to_its_own_display_truncation(server: str) -> None:
    """Served side by side, tiny64 (which stores a display truncation) is drawn at it and tiny32 (which
    stores none) at the full distribution, wherever a request names no truncation: the image routes,
    their cache validators, and the page (its menu, permalink and script data)."""
    for model, default in (("tiny64", f"{TINY64_DISPLAY:g}"), ("tiny32", "0")):
        for path in ("face.png?seed=3", "grid.png?seed=3&n=4", "interpolate.gif?from=3&to=4&frames=2"):
            url = f"{server}/api/{path}&model={model}"
            plain, named = get_ok(url), get_ok(f"{url}&truncation={default}")
            assert plain[1] == named[1] and plain[0]["etag"] == named[0]["etag"], (model, path)
        page = get_ok(f"{server}/?seed=3&model={model}")[1].decode()
        assert f'data-default-truncation="{default}"' in page and f"truncation={default}" in page
        assert 'id="permalink" href="/?seed=3&amp;model=' + model + '"' in page  # the default is not named
    tiny32 = get_ok(f"{server}/?seed=3&model=tiny32")[1].decode()
    assert '<option value="0" selected>full (off, default)</option>' in tiny32
    assert '<option value="1.5">medium (1.5)</option>' in tiny32
    # the defaults differ in pixels, not only in name: tiny32 untruncated, tiny64 truncated
    base = f"{server}/api/face.png?model=tiny64"
    assert any(get_ok(f"{base}&seed={s}&truncation=0")[1] != get_ok(f"{base}&seed={s}")[1] for s in range(10))
    # a variety that is the other model's default is only a choice here, and is named in the permalink
    other = get_ok(f"{server}/?seed=3&model=tiny32&truncation=1.5")[1].decode()
    assert '<option value="1.5" selected>medium (1.5)</option>' in other
    assert 'id="permalink" href="/?seed=3&amp;model=tiny32&amp;truncation=1.5"' in other


# ----------------------------------------------------------------------------- limits and caching


def _vm_kib(pid: int, field: str) -> int:
    """A memory figure (VmRSS, VmHWM) of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


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


def test_head_works_wherever_get_does(server: str) -> None:
    for path in (
        "/",
        "/healthz",
        "/api/models",
        "/openapi.json",
        "/static/page.js",
        "/api/face.png?seed=3&size=64",
        "/api/grid.png?n=4&seed=1",
        "/api/interpolate.gif?from=1&to=2&frames=3",
    ):
        status, headers, body = request(server + path, "HEAD")
        assert status == 200, (path, status)
        assert body == b""
        get_headers, get_body = get_ok(server + path)
        assert headers["content-type"] == get_headers["content-type"], path
        if "seed=" in path or "from=" in path or path in ("/healthz", "/api/models", "/static/page.js"):
            assert int(headers["content-length"]) == len(get_body), path
    status, headers, body = request(f"{server}/api/face.png?seed=-1", "HEAD")
    assert status == 422 and body == b""
    status, headers, body = request(f"{server}/api/face.png?seed=1", "POST")  # HEAD, not everything
    assert status == 405 and json.loads(body) == {"error": "Method Not Allowed"}
    assert headers["allow"] == "GET"


def test_seeded_images_are_cacheable_forever_with_a_model_version_etag(
    server: str, models: dict[str, Path]
) -> None:
    version = model_version(load_generator(models["tiny32"]))  # as the server loads it
    url = f"{server}/api/face.png?seed=5&model=tiny32&size=64"
    headers = get_ok(url)[0]
    assert headers["cache-control"] == IMMUTABLE == "public, max-age=31536000, immutable"
    tag = headers["etag"]
    assert re.fullmatch(rf'"{version}-[0-9a-f]{{16}}"', tag), tag  # strong, names the weights
    assert get_ok(url)[0]["etag"] == tag
    others = {
        get_ok(u)[0]["etag"]
        for u in (
            f"{server}/api/face.png?seed=6&model=tiny32&size=64",
            f"{server}/api/face.png?seed=5&model=tiny32&size=128",
            f"{server}/api/face.png?seed=5&model=tiny64&size=64",
        )
    }
    assert tag not in others and len(others) == 3
    # Revalidation: a matching If-None-Match (alone, weak or in a list) is a bodiless 304.
    for inm in (tag, f"W/{tag}", f'"nope", {tag}', "*"):
        status, h304, body304 = request(url, headers={"If-None-Match": inm})
        assert (status, body304) == (304, b""), inm
        assert h304["etag"] == tag and h304["cache-control"] == IMMUTABLE
    assert request(url, headers={"If-None-Match": '"nope"'})[0] == 200
    # Grids and walks of seeds are immutable too; random faces and grids are never stored.
    for seeded in ("/api/grid.png?n=4&seed=1&model=tiny32", "/api/interpolate.gif?from=1&to=2&frames=3"):
        h = get_ok(server + seeded)[0]
        assert h["cache-control"] == IMMUTABLE and h["etag"].startswith('"')
    for random in ("/api/face.png?model=tiny32", "/api/grid.png?n=4&model=tiny32"):
        h = get_ok(server + random)[0]
        assert h["cache-control"] == "no-store" and "etag" not in h
    # A retrained model under the same name has another version, so other ETags.
    g2, _ = build_models(ModelConfig(size=32, ngf=8, ndf=8), seed=123)
    assert model_version(g2) != model_version(load_generator(models["tiny32"]))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_workers_share_the_port_and_stop_cleanly(
    models: dict[str, Path], tmp_path: Path, sig: signal.Signals
) -> None:
    log = tmp_path / "server.log"
    with server_process(models, log, ["--workers", "2"]) as (base, proc):
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        workers = [int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
        assert len(workers) == 2, children
        assert json.loads(get_ok(f"{base}/healthz")[1])["ok"] is True
        with ThreadPoolExecutor(4) as pool:
            tags = set(pool.map(lambda i: get_ok(f"{base}/api/face.png?seed={i % 2}")[0]["etag"], range(16)))
        assert len(tags) == 2  # every worker names a face by the same ETag
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 0, log.read_text()
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{w}").exists() for w in workers):
            assert time.monotonic() < deadline, "a worker outlived the server"
            time.sleep(0.1)
    assert "Traceback" not in log.read_text()


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
