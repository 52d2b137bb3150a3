"""Error answers (facegan/serve/responses.py): one-line JSON 4xx for bad parameters, a bare 500."""

from __future__ import annotations

import json

import pytest
import torch

from facegan.config.schema import ModelConfig
from facegan.networks.dcgan import DCGANGenerator
from facegan.sampling.generate import MAX_SEED
from tests.serve.helpers import fetch


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
