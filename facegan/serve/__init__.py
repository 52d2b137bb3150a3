""" "This face does not exist": a small web app and JSON/image API over one or more generators.

Routes (all GET, and HEAD wherever GET works):
  /                     HTML page: a random face per load, `?seed=` permalinks, `?model=` switch
  /api/face.png         one face               seed, model, size, resample
  /api/grid.png         faces seed…seed+n-1    n, seed, model
  /api/interpolate.gif  latent walk            from, to, frames, method, size, resample, duration,
                                               model
  /api/models           loaded models (JSON)
  /healthz              {"ok": true, ...}
  /static/…             the page's CSS and script
  /openapi.json         FastAPI's schema (the /docs UI is off: it loads from a CDN)

Every parameter is bounded; a bad one is answered with a 4xx and a one-line `{"error": "..."}`
body, and any unexpected failure with a generic 500 of the same shape, never a stack trace. A seed
names one face of a model, so a seeded image is byte-for-byte reproducible. Generators are loaded
once; each has one thread that runs all its forward passes, batching concurrent requests (a torch
module is not safe to call from several threads at once), and images are encoded in worker
threads, so the event loop keeps answering while faces are being drawn.

One job per module:
  config      ServeConfig: the settings, from which `facegan serve`'s flags are generated
  run         serve(cfg): the socket, hypercorn, `--workers N` processes on one port
  app         build_app: generators in, FastAPI app out
  routes      the routes            params     their parameters, bounds and error lines
  models      the served models and the state the routes share
  worker      the batching thread that runs each generator
  page        the HTML (templates/*.html, Jinja2, autoescaped; static/page.css, page.js)
  responses   image and error responses     middleware   HEAD as GET, security headers,
                                                         relative redirects
  limits      the cost budget (429 + Retry-After) and the limits' settings
  guard       requests in flight, head limits, proxies, upgrades, send deadline (ASGI)
  cache       model versions and ETags: seeded images are cacheable forever

Importing this package is cheap (the CLI builds its flags from `config` and `limits` without
loading torch or the web server); `serve`, `build_app` and the rest load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from facegan.serve.app import build_app
    from facegan.serve.config import ServeConfig
    from facegan.serve.limits import ServeLimits
    from facegan.serve.run import serve, worker_app
    from facegan.serve.worker import GeneratorWorker

_EXPORTS = {
    "build_app": "app",
    "ServeConfig": "config",
    "ServeLimits": "limits",
    "serve": "run",
    "worker_app": "run",
    "GeneratorWorker": "worker",
}
__all__ = [
    "GeneratorWorker",
    "ServeConfig",
    "ServeLimits",
    "build_app",
    "serve",
    "worker_app",
]


def __getattr__(name: str) -> Any:
    # PEP 562: `from facegan.serve import serve` imports facegan.serve.run only then, so the CLI can
    # read ServeConfig without the server's dependencies (and say which extra is missing).
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"facegan.serve.{_EXPORTS[name]}"), name)
