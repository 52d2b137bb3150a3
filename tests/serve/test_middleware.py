"""The app's middleware (facegan/serve/middleware.py): HEAD wherever GET works, 405 elsewhere."""

from __future__ import annotations

import json

from tests.serve.helpers import get_ok, request


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
