"""HTTP caching of seeded images (facegan/serve/cache.py): immutable URLs, model-version ETags, 304s."""

from __future__ import annotations

import re
from pathlib import Path

from facegan.config.schema import ModelConfig
from facegan.networks.factory import build_models
from facegan.sampling.generate import load_generator
from facegan.serve.cache import IMMUTABLE, model_version
from tests.serve.helpers import get_ok, request


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
