"""Measuring edits (facegan.edits.evaluate): every measure, and a swing read against real faces'."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from facegan.edits.classifier import AttributeNet
from facegan.edits.evaluate import evaluate_edits, markdown, real_reference, summary
from facegan.sampling.generate import load_generator
from facegan.sampling.render import edit_faces
from tests.edits.helpers import NAMES


def test_evaluate_edits_reports_every_measure(model: Path) -> None:
    g = load_generator(model)
    torch.manual_seed(0)
    net = AttributeNet(NAMES, size=32).eval()
    real = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    seeds = list(range(16))

    def render(s: list[int], e: dict[str, float]) -> torch.Tensor:
        return edit_faces(g, g.edits, s, e)

    res = evaluate_edits(render, ["Smiling", "Eyeglasses"], net, real, seeds)
    row = res["edits"]["Smiling"]
    assert len(row["target"]) == 3 and set(row["entanglement"]) == set(NAMES)
    assert row["identity_drift"][1] > 0 and len(row["swd"]) == 2
    assert "| Smiling |" in markdown(res) and summary(res)["swing"] == pytest.approx(
        np.mean([r["swing"] for r in res["edits"].values()]), abs=1e-3
    )
    json.dumps(res)  # the CLI writes it as JSON


def test_a_swing_is_read_against_real_faces_labelled_with_and_without(model: Path) -> None:
    g = load_generator(model)
    torch.manual_seed(0)
    net = AttributeNet(NAMES, size=32).eval()
    real = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    labels = np.zeros((16, len(NAMES)), np.float32)
    labels[:6, NAMES.index("Smiling")] = 1  # Eyeglasses: nobody, so no contrast to read against
    ref = real_reference(net, real.numpy(), labels, NAMES, ["Smiling", "Eyeglasses"])
    probs, _ = net.predict(real.float() / 127.5 - 1)
    smiling = probs[:, NAMES.index("Smiling")]
    assert ref == {
        "Smiling": [pytest.approx(float(smiling[6:].mean())), pytest.approx(float(smiling[:6].mean()))]
    }

    def render(s: list[int], e: dict[str, float]) -> torch.Tensor:
        return edit_faces(g, g.edits, s, e)

    res = evaluate_edits(render, ["Smiling", "Eyeglasses"], net, real, list(range(16)), reference=ref)
    row = res["edits"]["Smiling"]
    assert row["swing_vs_real"] == pytest.approx(
        row["swing"] / (ref["Smiling"][1] - ref["Smiling"][0]), abs=0.01
    )
    assert "real" not in res["edits"]["Eyeglasses"] and "swing_vs_real" not in summary(res)
    assert "real faces without / with" not in markdown(res)  # a column only when every edit has one
    del res["edits"]["Eyeglasses"]
    assert "| real faces without / with | swing ÷ real's |" in markdown(res)
