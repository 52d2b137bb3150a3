"""The seeds' DCGAN architecture, and depth that follows the image size."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from facegan.config.schema import ModelConfig
from facegan.errors import FaceganError
from facegan.networks.factory import build_models


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_default_is_the_seed_dcgan() -> None:
    g, d = build_models(ModelConfig())
    # Parameter counts of the PyTorch DCGAN example at 64x64, nz=100, ngf=ndf=64.
    assert n_params(g) == 3_576_704
    assert n_params(d) == 2_765_568
    kinds = [type(m).__name__ for m in g.main]
    assert kinds == ["ConvTranspose2d", "BatchNorm2d", "ReLU"] * 4 + ["ConvTranspose2d", "Tanh"]
    kinds = [type(m).__name__ for m in d.main]
    assert kinds == (["Conv2d", "LeakyReLU"] + ["Conv2d", "BatchNorm2d", "LeakyReLU"] * 3 + ["Conv2d"])


@pytest.mark.parametrize("g_upsample", ["convt", "resize"])
@pytest.mark.parametrize("size", [32, 64, 128, 256])
def test_any_supported_size_builds(size: int, g_upsample: str) -> None:
    g, d = build_models(ModelConfig(size=size, ngf=8, ndf=8, latent_dim=16, g_upsample=g_upsample))
    x = g(torch.randn(2, 16))
    assert x.shape == (2, 3, size, size)
    assert x.min() >= -1 and x.max() <= 1
    assert d(x).shape == (2,)


def test_resize_generator_upsamples_then_convolves() -> None:
    """--g-upsample resize: the first layer still projects z to 4×4; every doubling is nearest ×2 + 3×3."""
    g, _ = build_models(ModelConfig(g_upsample="resize"))
    kinds = [type(m).__name__ for m in g.main]
    doubling = ["Upsample", "Conv2d", "BatchNorm2d", "ReLU"]
    assert kinds == ["ConvTranspose2d", "BatchNorm2d", "ReLU", *doubling * 3, "Upsample", "Conv2d", "Tanh"]
    with pytest.raises(FaceganError, match="--g-upsample applies to the dcgan generator only"):
        ModelConfig(arch="r3gan", g_upsample="resize")


def test_discriminator_outputs_logits_not_probabilities() -> None:
    _, d = build_models(ModelConfig(size=32, ndf=8))
    with torch.no_grad():
        d.main[-1].weight.mul_(100)
        out = d(torch.randn(8, 3, 32, 32))
    assert (out.abs() > 1).any()


def test_dcgan_init_statistics() -> None:
    g, d = build_models(ModelConfig(), seed=1)
    conv = torch.cat(
        [
            m.weight.flatten()
            for m in [*g.modules(), *d.modules()]
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))
        ]
    )
    bn_w = torch.cat([m.weight for m in g.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(conv.mean().item()) < 1e-3 and abs(conv.std().item() - 0.02) < 1e-3
    assert abs(bn_w.mean().item() - 1.0) < 5e-3 and abs(bn_w.std().item() - 0.02) < 5e-3


def test_init_is_deterministic_in_seed() -> None:
    a, _ = build_models(ModelConfig(size=32, ngf=8), seed=5)
    b, _ = build_models(ModelConfig(size=32, ngf=8), seed=5)
    c, _ = build_models(ModelConfig(size=32, ngf=8), seed=6)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.main[0].weight, c.main[0].weight)
