"""Refining a supervised direction by gradient (facegan.edits.refine)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from facegan.cli.main import main
from facegan.config.schema import ModelConfig
from facegan.edits.classifier import AttributeNet
from facegan.edits.refine import CAP, STEP, refine
from facegan.edits.supervised import fit_boundaries, package
from facegan.networks.factory import build_models
from facegan.sampling.generate import latents
from tests.edits.helpers import NAMES


class Colours(torch.nn.Module):
    """A stand-in attribute classifier whose three logits are the image's mean red, green and blue."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(20.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x.mean(dim=(2, 3))


def tiny_generator() -> torch.nn.Module:
    """A 32 px generator whose faces differ clearly with z (DCGAN's N(0, 0.02) start barely does)."""
    g, _ = build_models(ModelConfig(size=32, latent_dim=16, ngf=8, ndf=8), seed=3)
    with torch.no_grad():
        for p in g.parameters():
            if p.dim() > 1:
                p.mul_(10)
    return g


def apart(g: torch.nn.Module, net: torch.nn.Module, d: torch.Tensor, attr: int) -> float:
    """The objective's first term on faces the refinement never drew (seeds 0 …)."""
    z = latents(list(range(64)), 16)
    with torch.no_grad():
        plus = net(g(z + STEP * d.reshape(1, -1, 1, 1)))[:, attr].clamp(max=CAP)
        minus = net(g(z - STEP * d.reshape(1, -1, 1, 1)))[:, attr].clamp(min=-CAP)
    return float(plus.mean() - minus.mean())


def test_refining_separates_the_attribute_further_and_is_deterministic() -> None:
    g, net = tiny_generator(), Colours()
    g.train(), net.train()
    start = F.normalize(torch.randn(16, generator=torch.Generator().manual_seed(1)), dim=0)
    refined = refine(g, net, start, 2, [0, 1], iters=30, batch=8)  # more blue, red and green kept
    assert refined.shape == (16,) and float(refined.norm()) == pytest.approx(1.0, abs=1e-5)
    g.eval(), net.eval()
    assert apart(g, net, refined, 2) > apart(g, net, start, 2) + 0.05
    # the models are left as they were: trainable, in train mode, weights untouched
    assert all(p.requires_grad for p in [*g.parameters(), *net.parameters()])
    g.train(), net.train()
    assert torch.equal(refine(g, net, start, 2, [0, 1], iters=30, batch=8), refined)
    assert g.training and net.training


def test_a_bad_refine_count_is_one_line_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(
        [
            "directions",
            "--pretrained",
            "celeba64",
            "--data",
            str(tmp_path / "absent.zip"),
            "--attrs",
            str(tmp_path / "absent.txt"),
            "--refine",
            "-3",
            "--out",
            str(tmp_path / "d.safetensors"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.splitlines() == [err] and "--refine must be between 0 and 10,000" in err


def test_supervised_directions_are_refined_when_asked_and_say_so() -> None:
    g = tiny_generator()
    torch.manual_seed(0)
    net = AttributeNet(NAMES, size=32)
    bounds = fit_boundaries(g, net, samples=64)
    plain = package(g, net, NAMES, bounds, conditional=False, calibration=16)
    refined = package(g, net, NAMES, bounds, conditional=False, calibration=16, refine_iters=3)
    assert plain.info["method"] == "interfacegan" and plain.info["refine"] is None
    assert refined.info["method"] == "interfacegan-refined" and refined.info["refine"]["iters"] == 3
    assert torch.allclose(refined.vectors.norm(dim=1), torch.ones(len(NAMES)), atol=1e-5)
    assert not torch.allclose(refined.vectors, plain.vectors) and refined.steps.shape == (len(NAMES), 2)
