"""What every metric draws on (facegan/metrics/measurement.py): uint8 faces, one shared pass."""

from __future__ import annotations

import pytest
import torch

from facegan.config.schema import ModelConfig
from facegan.data.dataset import PackedDataset
from facegan.metrics import evaluate, to_uint8
from facegan.networks.factory import build_models
from tests.metrics.helpers import SIZE

pytestmark = pytest.mark.usefixtures("one_thread", "short_embedding")


def test_to_uint8() -> None:
    x = torch.tensor([-1.0, -0.5, 0.0, 1.0, 2.0, float("nan")])
    assert to_uint8(x).tolist() == [0, 64, 128, 255, 255, 128]


def test_evaluate_generates_the_pixel_measures_faces_once(dataset: PackedDataset) -> None:
    """SWD, C2ST and PRDC share one generated pass (each a prefix of the same seeds' faces): asking
    for all three costs the generator no more than one of them, and gives each the same numbers."""
    g, _ = build_models(ModelConfig(size=SIZE, latent_dim=16, ngf=8, ndf=8), seed=0)
    made: list[int] = []
    hook = g.register_forward_hook(lambda module, args, out: made.append(len(out)))
    try:
        together = evaluate(g, dataset, ["swd", "c2st", "prdc"], num_fake=40, seed=3, real_split="all")
        assert sum(made) == 40
        alone: dict[str, float] = {}
        for name in ("swd", "c2st", "prdc"):
            alone.update(evaluate(g, dataset, [name], num_fake=40, seed=3, real_split="all"))
    finally:
        hook.remove()
    assert together == alone
