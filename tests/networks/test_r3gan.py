"""The R3GAN-style architecture (`--arch r3gan`) and its objective (`--loss rpgan`, R1 + R2)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from facegan.cli.main import main
from facegan.config.files import preset_config
from facegan.config.schema import GANConfig, ModelConfig, OptimConfig
from facegan.errors import FaceganError
from facegan.metrics.evaluate import to_uint8
from facegan.networks.checkpoint import load_checkpoint
from facegan.networks.factory import build_models
from facegan.networks.r3gan import ResDiscriminator, ResGenerator, ResidualBlock, stage_widths
from facegan.runtime.perf import make_optimizers
from facegan.sampling.generate import faces, load_generator
from facegan.training.losses import d_loss_rpgan, g_loss_rpgan, r1_penalty
from facegan.training.step import g_step, train_step

CFG = ModelConfig(size=32, latent_dim=16, ngf=16, ndf=16, arch="r3gan")
TINY = ["--size", "32", "--latent-dim", "16", "--ngf", "16", "--ndf", "16", "--batch-size", "8"]


@pytest.mark.parametrize("size", [32, 64, 128, 256])
def test_depth_follows_size_and_shapes_hold(size: int) -> None:
    cfg = ModelConfig(size=size, latent_dim=16, ngf=16, ndf=16, arch="r3gan")
    g, d = build_models(cfg)
    assert isinstance(g, ResGenerator) and isinstance(d, ResDiscriminator)
    n_stages = size.bit_length() - 2  # 4, 8, …, size
    assert len(g.stages) == len(d.stages) == n_stages
    x = g(torch.randn(2, 16))
    assert x.shape == (2, 3, size, size)
    assert d(x).shape == (2,)


def test_widths_match_the_dcgan_budget() -> None:
    # 64 px, base 32: the DCGAN G's 256/128/64/32 at 4…32 px, plus a half-width stage at 64 px
    assert stage_widths(64, 32) == [256, 128, 64, 32, 16]
    assert stage_widths(32, 64) == [256, 128, 64, 32]


def test_no_normalisation_layers_so_samples_are_independent() -> None:
    g, d = build_models(CFG)
    norms = (torch.nn.BatchNorm2d, torch.nn.GroupNorm, torch.nn.LayerNorm, torch.nn.InstanceNorm2d)
    assert not [m for m in [*g.modules(), *d.modules()] if isinstance(m, norms)]
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():  # a sample's score does not depend on its batch neighbours
        assert torch.allclose(d(x)[:1], d(x[:1]), atol=1e-5)


def test_fixup_init_starts_every_residual_branch_at_zero() -> None:
    g, d = build_models(CFG, seed=3)
    blocks = [m for m in [*g.modules(), *d.modules()] if isinstance(m, ResidualBlock)]
    assert blocks and all(b.project.weight.abs().sum() == 0 for b in blocks)
    assert all(b.expand.weight.std() > 0 for b in blocks)
    x = torch.randn(2, blocks[0].expand.in_channels, 8, 8)
    assert torch.equal(blocks[0](x), x)  # identity at init
    with torch.no_grad():  # outputs on a sane scale: no exploding chain of stages
        img = g(torch.randn(64, 16))
    assert 0.05 < img.std().item() < 5


def test_rpgan_losses_equal_their_formulas() -> None:
    real = torch.tensor([2.0, -1.0, 0.5])
    fake = torch.tensor([-3.0, 0.25, 1.5])
    expect_d = sum(torch.log1p(torch.exp(f - r)) for r, f in zip(real, fake)) / 3
    expect_g = sum(torch.log1p(torch.exp(r - f)) for r, f in zip(real, fake)) / 3
    assert d_loss_rpgan(real, fake).item() == pytest.approx(expect_d.item())
    assert g_loss_rpgan(fake, real).item() == pytest.approx(expect_g.item())
    # paired: swapping which fake meets which real changes the loss (unlike the unpaired bce)
    assert d_loss_rpgan(real, fake.flip(0)).item() != pytest.approx(expect_d.item())


def test_r2_penalises_the_gradient_on_fakes_on_the_lazy_schedule() -> None:
    """The step adds every·γ/2·E‖∇D(fake)‖² on steps where step % r1_every == 0, and nothing between."""
    gan = GANConfig(loss="rpgan", r2_gamma=2.0, r1_every=4)
    g, d = build_models(CFG, seed=0, gan=gan)
    opt_g, opt_d = make_optimizers(g, d, OptimConfig(beta1=0.0, beta2=0.99))
    real = torch.rand(4, 3, 32, 32) * 2 - 1
    z = torch.randn(4, 16, 1, 1, generator=torch.Generator().manual_seed(1))  # the step's first draw
    expected = 4 * r1_penalty(d, g(z).detach(), 2.0)
    stats = train_step(g, d, opt_g, opt_d, real, torch.Generator().manual_seed(1), gan=gan, step=0)
    assert stats.reg.item() == pytest.approx(expected.item(), rel=1e-4)
    off = train_step(g, d, opt_g, opt_d, real, torch.Generator().manual_seed(1), gan=gan, step=1)
    assert off.reg.item() == 0


def test_g_step_pairs_fakes_with_reals() -> None:
    """rpgan's G loss is softplus(D(x) - D(G(z))) per pair, through D with D's weights untouched."""
    gan = GANConfig(loss="rpgan")
    g, d = build_models(CFG, seed=0, gan=gan)
    opt_g, _ = make_optimizers(g, d, OptimConfig())
    real = torch.rand(4, 3, 32, 32) * 2 - 1
    fake = g(torch.randn(4, 16))
    with torch.no_grad():
        expected = F.softplus(d(real) - d(fake)).mean()
    d_before = [p.clone() for p in d.parameters()]
    loss_g, _ = g_step(d, opt_g, fake, lambda x: x, gan, contextlib.nullcontext(), None, real)
    assert loss_g.item() == pytest.approx(expected.item(), rel=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(d_before, d.parameters()))
    assert all(p.requires_grad for p in d.parameters())  # D unfrozen again for its next step


def test_preset_trains_exports_and_generates(prepared: Path, tmp_path: Path) -> None:
    """The r3gan preset through the CLI: train, resume, export, and seeded faces from the export."""
    runs = tmp_path / "runs"
    assert (
        main(
            [
                "train",
                "--data",
                str(prepared),
                "--preset",
                "r3gan",
                *TINY,
                "--steps",
                "4",
                "--ckpt-every",
                "2",
                "--outdir",
                str(runs),
                "--quiet",
            ]
        )
        == 0
    )
    (run,) = runs.iterdir()
    ckpt = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert ckpt["config"]["model"]["arch"] == "r3gan" and ckpt["config"]["gan"]["loss"] == "rpgan"
    assert "G_ema" in ckpt
    assert main(["train", "--resume", str(run), "--steps", "6", "--quiet"]) == 0
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["step"] == 6
    g = load_generator(run / "generator.safetensors")
    assert isinstance(g, ResGenerator)
    a, b = faces(g, [3, 4]), faces(g, [4])
    assert a.shape == (2, 3, 32, 32)
    # a seed's face does not depend on its batch neighbours, to the pixel values a PNG stores
    assert (a[1:] - b).abs().max() < 1e-5 and torch.equal(to_uint8(a[1:]), to_uint8(b))


def test_r3gan_preset_and_bad_combinations() -> None:
    cfg = preset_config("r3gan")
    assert cfg.model.arch == "r3gan" and cfg.gan.loss == "rpgan"
    assert cfg.gan.r1_gamma > 0 and cfg.gan.r2_gamma == cfg.gan.r1_gamma and cfg.optim.beta1 == 0
    with pytest.raises(FaceganError, match="unknown --arch 'stylegan9'; choose one of dcgan, r3gan"):
        build_models(ModelConfig(arch="stylegan9"))
    with pytest.raises(FaceganError, match="no normalisation"):
        build_models(CFG, gan=GANConfig(d_norm="batch"))
