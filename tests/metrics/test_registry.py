"""The metric registry (facegan/metrics/registry.py): a new metric joins in one place."""

from __future__ import annotations

import pytest
import torch

from facegan.data.dataset import PackedDataset
from facegan.errors import FaceganError
from facegan.metrics import evaluate
from tests.metrics.helpers import tiny_generator

pytestmark = pytest.mark.usefixtures("one_thread", "short_embedding")


def test_a_new_metric_joins_the_registry_in_one_place(dataset: PackedDataset) -> None:
    """One decorated function makes a metric that `evaluate` (and so --metrics / --eval-metrics)
    accepts by name, drawing on the same shared pass of generated faces as the built-in ones."""
    from facegan.metrics import registry
    from facegan.metrics.measurement import Measurement
    from facegan.metrics.protocols import PROTOCOLS, Protocol

    seen: list[int] = []
    try:

        @registry.register_metric("mean_gap", "pixels", Protocol("brightness", "mean_gap", 40, 40, "test"))
        def mean_gap(m: Measurement, p: Protocol) -> dict[str, float]:
            fake = m.fake_pixels(m.n_pixel(p)).float()
            seen.append(len(fake))
            real = torch.from_numpy(m.dataset.images[m.real_rows(m.n_pixel(p))]).float()
            return {p.name: float((fake.mean() - real.mean()).abs())}

        out = evaluate(tiny_generator(), dataset, ["brightness", "swd"])
    finally:
        registry.METRICS.pop("mean_gap", None)
        PROTOCOLS.pop("brightness", None)
    assert out["brightness"] >= 0 and "swd" in out and seen == [16]  # the 16 held-out reals cap n
    with pytest.raises(FaceganError, match="unknown metric 'brightness'"):
        evaluate(tiny_generator(), dataset, ["brightness"])
