"""The batching worker (facegan/serve/worker.py): exact faces alone, batched and under load."""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from facegan.sampling.generate import load_generator
from tests.serve.helpers import fetch


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
