"""The batching worker: the one thread that runs a generator's forward passes for the server."""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future

import torch
from torch import nn

from facegan.sampling.generate import PASS_BATCH, forward_fixed


class GeneratorWorker:
    """The one thread that ever calls a given generator, batching the requests that queue up.

    A torch module must not be called from several threads at once, so every forward pass goes
    through this thread. Requests that arrive while a pass runs are served together by the next
    one, which costs little more than a single face (on 2 CPU cores a 64 px DCGAN serves about
    twice the faces per second it does one at a time). Every pass runs exactly BATCH latents,
    padded with zeros (`facegan.sampling.generate.forward_fixed`, which the CLI and the Python API use too):
    kernels may round differently for different batch sizes, and a fixed shape keeps a seed's pixels
    identical whether it was drawn alone, among other requests, in a grid, in a walk or by the CLI.
    """

    BATCH = PASS_BATCH

    def __init__(self, g: nn.Module, name: str) -> None:
        self.g = g
        self._jobs: queue.SimpleQueue[tuple[torch.Tensor, Future[torch.Tensor]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"facegan-g-{name}", daemon=True)
        self._thread.start()

    def submit(self, z: torch.Tensor) -> Future[torch.Tensor]:
        """G(z) for latents (N, nz, 1, 1), eventually: (N, 3, S, S) in [-1, 1] on the CPU."""
        fut: Future[torch.Tensor] = Future()
        self._jobs.put((z, fut))
        return fut

    def stop(self) -> None:
        self._jobs.put(None)

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            jobs, stop = batch
            if jobs:
                try:
                    out = self._forward(torch.cat([z for z, _ in jobs]))
                except BaseException as err:  # the waiting requests report it; the thread lives on
                    for _, fut in jobs:
                        fut.set_exception(err)
                else:
                    parts = out.split([len(z) for z, _ in jobs])
                    for (_, fut), part in zip(jobs, parts, strict=True):
                        fut.set_result(part)
            if stop:
                return

    def _next_batch(self) -> tuple[list[tuple[torch.Tensor, Future[torch.Tensor]]], bool] | None:
        """Block for one job, then take whatever else already waits, up to about one BATCH; never
        wait for more. Jobs whose request has gone away (cancelled) are dropped. None: stop now."""
        job = self._jobs.get()
        if job is None:
            return None
        waiting, count, stop = [job], len(job[0]), False
        while count < self.BATCH:
            try:
                nxt = self._jobs.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                stop = True
                break
            waiting.append(nxt)
            count += len(nxt[0])
        # From here on a future cannot be cancelled, so set_result below cannot fail.
        jobs = [(z, fut) for z, fut in waiting if fut.set_running_or_notify_cancel()]
        return jobs, stop

    def _forward(self, z: torch.Tensor) -> torch.Tensor:
        return forward_fixed(self.g, z)
