"""Tests for the face server: a real server process on a free loopback port, spoken to over HTTP.

The server is started by `server_command`, the one place to change when the CLI takes over.
"""

from __future__ import annotations

import io
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facegan.checkpoint import export_generator
from facegan.config import ModelConfig
from facegan.errors import FaceganError
from facegan.generate import MAX_SEED, faces, load_generator, write_faces
from facegan.models import Generator, build_models
from facegan.serve import DEFAULT_TRUNCATION

REPO = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT_S = 60.0


# ----------------------------------------------------------------------------- server helpers


def server_command(models: dict[str, Path], port: int) -> list[str]:
    """The real CLI command that starts the server."""
    sources = {name: str(path) for name, path in models.items()}
    flags = [a for n, p in sources.items() for a in ("--checkpoint", f"{n}={p}")]
    return [sys.executable, "-m", "facegan", "serve", *flags, "--port", str(port), "--device", "cpu"]


def free_port() -> int:
    """A loopback port nobody listens on right now (the OS picks it for a socket bound to 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_models(folder: Path) -> dict[str, Path]:
    """Two tiny exported generators: 32 px / latent 100, and 64 px / latent 16."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, cfg, seed in (("tiny32", ModelConfig(size=32, ngf=8, ndf=8), 0),
                            ("tiny64", ModelConfig(size=64, ngf=8, ndf=8, latent_dim=16), 1)):
        g, _ = build_models(cfg, seed=seed)
        out[name] = export_generator(with_contrast(g), g.cfg, folder / f"{name}.safetensors")
    return out


def with_contrast(g: Generator) -> Generator:
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


@contextmanager
def running_server(models: dict[str, Path], log_path: Path) -> Iterator[str]:
    """Start the server process, wait for /healthz, yield its base URL, always stop it."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    # Output goes to a file, not a pipe: an unread pipe fills up and would block the server.
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(server_command(models, port), cwd=REPO, env=env,
                                stdout=log_file, stderr=subprocess.STDOUT)
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
        yield base
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


@pytest.mark.parametrize(("query", "expected"), [
    ("seed=1&model=tiny32", 32),
    ("seed=1&model=tiny64", 64),
    ("seed=1&model=tiny32&size=native", 32),
    ("seed=1&model=tiny32&size=512", 512),
    ("seed=1&model=tiny64&size=32", 32),  # shrinking works too
    ("seed=1", 32),  # the first model is the default
])
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
    assert (get_ok(f"{server}/api/face.png?seed=42&model=tiny32&size=64")[1]
            != get_ok(f"{server}/api/face.png?seed=42&model=tiny64&size=64")[1])


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


def test_served_face_is_the_face_generate_writes(server: str, models: dict[str, Path],
                                                 tmp_path: Path) -> None:
    """A seed names the same face in `facegan generate` and in the server (which runs batches of
    8, so allow one level of rounding where kernels round differently per batch size)."""
    g = load_generator(models["tiny64"], amp="auto")  # as `facegan generate` and `serve` load it
    # The API's default variety is `facegan generate --truncation DEFAULT_TRUNCATION`; 0 = untruncated.
    for query, truncation in (("", DEFAULT_TRUNCATION), ("&truncation=0", None), ("&truncation=1.5", 1.5)):
        (path,) = write_faces(faces(g, [7], truncation=truncation), [7], tmp_path / query)
        served = np.asarray(image(get_ok(f"{server}/api/face.png?seed=7&model=tiny64{query}")[1]))
        written = np.asarray(Image.open(path).convert("RGB"))
        assert np.abs(served.astype(int) - written.astype(int)).max() <= 1, query
    full = get_ok(f"{server}/api/face.png?seed=7&model=tiny64&truncation=0")[1]
    assert full != get_ok(f"{server}/api/face.png?seed=7&model=tiny64")[1]  # it really truncates


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
    url = (f"{server}/api/interpolate.gif?from=3&to=9&frames=7&model=tiny64&size=128&method={method}"
           f"&truncation={truncation}")
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
    assert listed["tiny32"] == {"name": "tiny32", "size": 32, "latent_dim": 100,
                                "source": "tiny32.safetensors"}
    assert listed["tiny64"]["size"] == 64
    assert listed["tiny64"]["latent_dim"] == 16


def test_openapi_schema(server: str) -> None:
    schema = json.loads(get_ok(f"{server}/openapi.json")[1])
    for path in ("/api/face.png", "/api/grid.png", "/api/interpolate.gif", "/api/models",
                 "/healthz"):
        assert path in schema["paths"]
    params = {p["name"]: p for p in schema["paths"]["/api/face.png"]["get"]["parameters"]}
    assert set(params) >= {"seed", "model", "size"}


# ----------------------------------------------------------------------------- the page


def test_page_shows_the_requested_face(server: str) -> None:
    headers, body = get_ok(f"{server}/?seed=123&model=tiny64")
    page = body.decode()
    assert headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in headers["content-security-policy"]
    assert ('id="face" class="smooth" src="/api/face.png?seed=123&amp;model=tiny64&amp;size=512'
            f'&amp;resample=lanczos&amp;truncation={DEFAULT_TRUNCATION:g}"') in page
    assert '<span id="seed">123</span>' in page
    assert 'id="permalink" href="/?seed=123&amp;model=tiny64"' in page
    for element_id in ("new-face", "model", "walk-form", "walk-go", "variety", "upscale", "upscale-note"):
        assert f'id="{element_id}"' in page
    assert "http://" not in page and "https://" not in page, "the page must not need the network"


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


@pytest.mark.parametrize(("path", "word"), [
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
])
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
    urls = [f"{server}/api/face.png?seed={i % 20}&model={('tiny32', 'tiny64')[i % 2]}&size=128"
            for i in range(n_requests)]

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
    print(f"\nload: {n_requests} requests, {n_clients} clients, {wall:.2f}s: "
          f"{n_requests / wall:.1f} req/s, p50 {p50:.1f} ms, p95 {p95:.1f} ms")


# ----------------------------------------------------------------------------- in-process


def test_serve_refuses_bad_setups(models: dict[str, Path], tmp_path: Path) -> None:
    from facegan.serve import serve

    with pytest.raises(FaceganError, match="no models"):
        serve({})
    with pytest.raises(FaceganError, match="bad model name"):
        serve({"a/b": str(models["tiny32"])})
    with pytest.raises(FaceganError, match="does not exist"):
        serve({"x": str(tmp_path / "missing.pt")}, device="cpu")
    with pytest.raises(FaceganError, match="device"):
        serve({"x": str(models["tiny32"])}, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(FaceganError, match="CUDA"):
            serve({"x": str(models["tiny32"])}, device="cuda")
    # A busy port is one clear error, before anything is served.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(FaceganError, match=f"cannot listen on 127.0.0.1:{port}"):
            serve({"x": str(models["tiny32"])}, port=port, device="cpu")


def test_generator_worker_batches_exactly_and_survives_cancelled_requests(
        models: dict[str, Path]) -> None:
    """Jobs submitted at once from many threads come back intact and identical to a job run
    alone; a cancelled job is skipped and the worker keeps serving."""
    from facegan.generate import latents
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


class _BrokenGenerator(Generator):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("secret internals at /srv/weights")


def test_unexpected_errors_are_a_generic_500(caplog: pytest.LogCaptureFixture) -> None:
    """build_app's catch-all: a failing generator gives a bare 500 JSON; details only in the log."""
    import uvicorn

    from facegan.serve import build_app

    app = build_app({"broken": _BrokenGenerator(ModelConfig(size=32, ngf=8, ndf=8))})
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)  # no signal handlers off-main
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
            time.sleep(0.05)
        status, headers, body = fetch(f"http://127.0.0.1:{port}/api/face.png?seed=1")
    finally:
        server.should_exit = True
        thread.join(10)
    assert status == 500
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body) == {"error": "internal server error"}
    assert b"secret" not in body and b"Traceback" not in body
    assert "secret internals" in caplog.text  # the operator still sees what happened


def test_page_offers_variety_and_upscaling_and_names_them_in_the_permalink(server: str) -> None:
    page = get_ok(f"{server}/?seed=12&model=tiny64")[1].decode()
    # defaults: the measured variety, smooth upscaling, said on the page
    assert f'<option value="{DEFAULT_TRUNCATION:g}" selected>' in page
    assert '<option value="lanczos" selected>smooth (Lanczos)</option>' in page
    assert "64×64 px face shown at 512 px with smooth Lanczos upscaling" in page
    assert f"resample=lanczos&amp;truncation={DEFAULT_TRUNCATION:g}" in page
    crisp = get_ok(f"{server}/?seed=12&model=tiny64&truncation=0&resample=nearest")[1].decode()
    assert '<option value="0" selected>full (off)</option>' in crisp and "crisp pixels" in crisp
    assert 'id="permalink" href="/?seed=12&amp;model=tiny64&amp;truncation=0&amp;resample=nearest"' in crisp
    assert 'class="crisp"' in crisp and 'id="walk" class="crisp"' in crisp
    # the walk area stays hidden (no broken-image frame) until a walk is made
    assert "#walk[hidden] { display: none; }" in page and 'width="256" height="256" hidden>' in page
