"""The image API (facegan/serve/routes.py) on a real server: faces, grids, walks, models, defaults."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facegan.sampling.generate import MAX_SEED, faces, load_generator, write_faces
from tests.serve.helpers import TINY64_DISPLAY, get_ok, image

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
