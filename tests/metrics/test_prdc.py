"""Precision, recall, density and coverage (facegan/metrics/prdc.py), alone and through evaluate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from facegan.config.schema import ModelConfig
from facegan.networks.factory import build_models

pytestmark = pytest.mark.usefixtures("one_thread", "short_embedding")


def test_prdc_separates_fidelity_from_diversity() -> None:
    """Precision/density fall when fakes leave the real manifold; recall/coverage fall when they
    cover only part of it (mode dropping), which one number like SWD cannot tell apart."""
    from facegan.metrics.prdc import prdc

    rng = np.random.default_rng(0)
    real = rng.normal(size=(600, 8)).astype(np.float32)
    same = prdc(real, rng.normal(size=(600, 8)).astype(np.float32))
    off = prdc(real, rng.normal(loc=3.0, size=(600, 8)).astype(np.float32))  # wrong place
    dropped = rng.normal(size=(3000, 8)).astype(np.float32)
    dropped = dropped[dropped[:, 0] > 0.5][:600]  # one region only
    collapsed = prdc(real, dropped)
    assert same["precision"] > 0.8 and same["recall"] > 0.8 and same["coverage"] > 0.8
    assert off["precision"] < 0.2 and off["density"] < 0.2
    # mode dropping keeps fidelity but loses diversity
    assert collapsed["precision"] > 0.85 and collapsed["density"] > 0.8
    assert collapsed["coverage"] < same["coverage"] - 0.2 and collapsed["recall"] < same["recall"] - 0.2


def test_prdc_protocol_through_evaluate(prepared: Path) -> None:
    """`--metrics prdc` end to end: a fixed embedding, deterministic numbers, truncation honoured."""
    from facegan.data.dataset import PackedDataset
    from facegan.metrics import evaluate
    from facegan.metrics.prdc import RandomEmbedding

    g, _ = build_models(ModelConfig(size=32, latent_dim=16, ngf=8, ndf=8), seed=0)
    ds = PackedDataset(prepared)
    a = evaluate(g, ds, ["prdc"], num_fake=32)
    b = evaluate(g, ds, ["prdc"], num_fake=32)
    assert a == b and set(a) >= {"prdc_precision", "prdc_recall", "prdc_density", "prdc_coverage"}
    assert all(0 <= a[f"prdc_{k}"] <= 1 for k in ("precision", "recall", "coverage"))
    t = evaluate(g, ds, ["prdc"], num_fake=32, truncation=0.5)
    assert t["truncation"] == 0.5 and t != a
    e1, e2 = RandomEmbedding(), RandomEmbedding()
    assert all(torch.equal(x, y) for x, y in zip(e1.state_dict().values(), e2.state_dict().values()))
