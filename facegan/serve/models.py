"""The served models and the state the routes share: each generator with its worker thread, the cost
budget, the image encoders and the thread limit they run under."""

from __future__ import annotations

import asyncio
import io
import math
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.to_thread
import torch
from fastapi import Request
from PIL import Image
from starlette.exceptions import HTTPException
from torch import nn

from facegan.runtime.perf import model_config
from facegan.sampling.generate import grid, latents, pil_from_unit, resize, to_pil
from facegan.serve.cache import model_version
from facegan.serve.limits import CostBudget, client_key
from facegan.serve.worker import GeneratorWorker

if TYPE_CHECKING:
    from facegan.sampling.directions import Directions

ENCODE_THREADS = 8  # PNG/GIF encoding in parallel; generation has its own thread per model

T = TypeVar("T")


@dataclass
class ServedModel:
    """One loaded generator, the worker that runs it, and where it came from."""

    name: str
    g: nn.Module
    source: str
    worker: GeneratorWorker = field(init=False)
    # Changes whenever the weights, or anything else that shapes the pixels, do; part of every ETag.
    version: str = field(init=False)

    def __post_init__(self) -> None:
        self.version = model_version(self.g)
        self.worker = GeneratorWorker(self.g, self.name)

    @property
    def size(self) -> int:
        return model_config(self.g).size

    @property
    def latent_dim(self) -> int:
        return model_config(self.g).latent_dim

    async def decode(self, z: torch.Tensor) -> torch.Tensor:
        """G(z) without blocking the event loop: (N, 3, S, S) in [-1, 1] on the CPU."""
        return await asyncio.wrap_future(self.worker.submit(z))

    @property
    def display_truncation(self) -> float | None:
        """The model's measured display default (facegan.sampling.generate.load_generator); None: full."""
        display: float | None = getattr(self.g, "display_truncation", None)
        return display

    def variety(self, truncation: float | None) -> float:
        """A request's `truncation` as the API writes it (0 = the full distribution), the model's
        display default when it names none."""
        if truncation is not None:
            return truncation
        return self.display_truncation or 0.0

    @property
    def edits(self) -> Directions | None:
        """The generator's edit directions (facegan.sampling.directions.Directions), or None."""
        directions: Directions | None = getattr(self.g, "edits", None)
        return directions

    def latents(
        self, seeds: list[int], truncation: float | None = None, edits: dict[str, float] | None = None
    ) -> torch.Tensor:
        """z of `seeds` exactly as in `facegan.sampling.generate`, moved by checked `edits` (see
        `edit_arg`)."""
        z = latents(seeds, self.latent_dim, truncation)
        if not edits:
            return z
        directions = self.edits
        assert directions is not None, "edit_arg refuses edits for a model without directions"
        return directions.apply(z, edits)

    async def faces(
        self, seeds: list[int], truncation: float | None = None, edits: dict[str, float] | None = None
    ) -> torch.Tensor:
        """The faces named by `seeds`, with `edits` applied to their latents."""
        return await self.decode(self.latents(seeds, truncation, edits))

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "latent_dim": self.latent_dim,
            "source": self.source,
            "display_truncation": self.display_truncation,  # the default variety; null = full
            "edits": list(self.edits.names) if self.edits is not None else [],
        }


class Server:
    """Shared state of one app: the models, the cost budget and the limiter for CPU-heavy work."""

    def __init__(self, models: dict[str, ServedModel], budget: CostBudget) -> None:
        self.models = models
        self.default = next(iter(models))
        self.budget = budget
        self._limiter: anyio.CapacityLimiter | None = None

    def admit(self, request: Request, cost: float) -> AbstractAsyncContextManager[None]:
        """Hold `cost` (Mpx) of the budget for this request's client; OverBudget (→ 429) if refused.
        Behind a trusted proxy the client is X-Forwarded-For's, as RequestGuard rewrote it."""
        host = request.client.host if request.client else None
        return self.budget.admit(client_key(host), cost)

    def pick(self, name: str | None) -> ServedModel:
        if name is None:
            return self.models[self.default]
        if name not in self.models:
            loaded = ", ".join(self.models)
            raise HTTPException(404, f"unknown model {name[:64]!r}; loaded: {loaded}")
        return self.models[name]

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking work (image encoding) in a worker thread. Its own limiter (made lazily, as
        it needs the running loop) keeps a flood of GIF requests from taking every thread anyio
        has."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(ENCODE_THREADS)
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    def stop(self) -> None:
        for m in self.models.values():
            m.worker.stop()


# ----------------------------------------------------------------------------- image encoding


def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")  # PIL writes no timestamp, so equal pixels give equal bytes
    return buf.getvalue()


def face_png(img: torch.Tensor, size: str, resample: str) -> bytes:
    return png_bytes(resize(to_pil(img), size, resample))


def grid_png(images: torch.Tensor) -> bytes:
    return png_bytes(pil_from_unit(grid(images, nrow=math.ceil(math.sqrt(len(images))))))
