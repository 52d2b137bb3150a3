"""Training stabilizers: each loss, penalty, augmentation and average does what its paper says."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from facegan.cli.main import main
from facegan.config.files import preset_config, with_overrides
from facegan.config.schema import DIFFAUG_OPS, GANConfig, ModelConfig, OptimConfig, RunConfig
from facegan.data import augment
from facegan.errors import FaceganError
from facegan.networks.checkpoint import load_checkpoint
from facegan.networks.dcgan import MinibatchStd
from facegan.networks.ema import EMA, ema_beta
from facegan.networks.factory import build_models
from facegan.runtime.perf import make_optimizers
from facegan.sampling.generate import load_generator
from facegan.training.loop import train
from facegan.training.losses import (
    d_loss_bce,
    d_loss_hinge,
    d_loss_lsgan,
    d_loss_wgan,
    g_loss_hinge,
    g_loss_lsgan,
    g_loss_wgan,
    gradient_penalty,
    r1_penalty,
)
from facegan.training.step import d_loss, train_step

CFG = ModelConfig(size=32, latent_dim=16, ngf=8, ndf=8)
REAL = torch.tensor([2.0, -1.0, 0.5, 0.0])
FAKE = torch.tensor([-3.0, 0.25, 1.5, -0.5])


# ----------------------------------------------------------------------------- losses


def test_hinge_lsgan_wgan_equal_their_formulas() -> None:
    # hinge: mean(max(0, 1 - r)) + mean(max(0, 1 + f)); G: -mean(f)
    hinge_real = (0 + 2 + 0.5 + 1) / 4
    hinge_fake = (0 + 1.25 + 2.5 + 0.5) / 4
    assert d_loss_hinge(REAL, FAKE).item() == pytest.approx(hinge_real + hinge_fake)
    assert g_loss_hinge(FAKE).item() == pytest.approx(-(-3 + 0.25 + 1.5 - 0.5) / 4)
    # lsgan: ½ mean((r - 1)²) + ½ mean(f²); G: ½ mean((f - 1)²)
    ls_real = 0.5 * (1 + 4 + 0.25 + 1) / 4
    ls_fake = 0.5 * (9 + 0.0625 + 2.25 + 0.25) / 4
    assert d_loss_lsgan(REAL, FAKE).item() == pytest.approx(ls_real + ls_fake)
    assert g_loss_lsgan(FAKE).item() == pytest.approx(0.5 * (16 + 0.5625 + 0.25 + 2.25) / 4)
    # wgan: mean(f) - mean(r); G: -mean(f)
    assert d_loss_wgan(REAL, FAKE).item() == pytest.approx(-1.75 / 4 - 1.5 / 4)
    assert g_loss_wgan(FAKE).item() == pytest.approx(1.75 / 4)


def test_one_sided_label_smoothing_changes_only_the_real_term() -> None:
    smooth = GANConfig(label_smoothing=0.1)
    other_fake = FAKE * -2
    delta = d_loss(smooth, REAL, FAKE) - d_loss(GANConfig(), REAL, FAKE)
    expected = F.binary_cross_entropy_with_logits(
        REAL, torch.full_like(REAL, 0.9)
    ) - F.binary_cross_entropy_with_logits(REAL, torch.ones_like(REAL))
    assert delta.item() == pytest.approx(expected.item(), abs=1e-6)
    # the fake term is untouched: the difference does not depend on the fake logits
    delta_other = d_loss(smooth, REAL, other_fake) - d_loss(GANConfig(), REAL, other_fake)
    assert delta_other.item() == pytest.approx(delta.item(), abs=1e-6)
    assert torch.equal(d_loss(GANConfig(), REAL, FAKE), d_loss_bce(REAL, FAKE))


class Linear(nn.Module):
    """D(x) = <w, x> per sample: its input gradient is w everywhere."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.w).flatten(1).sum(1)


class HalfSquare(nn.Module):
    """D(x) = ½·a·‖x‖² per sample: its input gradient is a·x."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(1.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.a * x.square().flatten(1).sum(1)


def test_gradient_penalty_vanishes_for_a_unit_gradient_critic() -> None:
    gen = torch.Generator().manual_seed(0)
    real, fake = torch.randn(6, 3, 4, 4, generator=gen), torch.randn(6, 3, 4, 4, generator=gen)
    eps = torch.rand(6, 1, 1, 1, generator=gen)
    w = torch.randn(3, 4, 4, generator=gen)
    unit = Linear(w / w.norm())
    assert gradient_penalty(unit, real, fake, eps, weight=10.0).item() == pytest.approx(0.0, abs=1e-10)
    steep = Linear(2 * w / w.norm())  # ‖∇‖ = 2 → (2 - 1)² · 10
    penalty = gradient_penalty(steep, real, fake, eps, weight=10.0)
    assert penalty.item() == pytest.approx(10.0, rel=1e-5)
    penalty.backward()  # and it trains the critic: d/dw pushes ‖w‖ back towards 1
    assert steep.w.grad is not None and (steep.w.grad * steep.w).sum() > 0


def test_r1_is_half_gamma_times_squared_input_gradient() -> None:
    d = HalfSquare()
    x = torch.randn(5, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    r1 = r1_penalty(d, x, gamma=4.0)
    expected = 4.0 / 2 * (1.5 * x).square().flatten(1).sum(1).mean()
    assert r1.item() == pytest.approx(expected.item(), rel=1e-6)
    r1.backward()  # d/da of 2·a²·E‖x‖² = 4·a·E‖x‖²
    assert d.a.grad.item() == pytest.approx((4 * 1.5 * x.square().flatten(1).sum(1).mean()).item(), rel=1e-5)


# ----------------------------------------------------------------------------- DiffAugment


def images(seed: int = 0, n: int = 8) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_diffaug_ops_are_the_config_ops() -> None:
    assert set(augment.OPS) == set(DIFFAUG_OPS)


@pytest.mark.parametrize("op", DIFFAUG_OPS)
def test_each_diffaug_op_changes_images_keeps_shape_and_is_differentiable(op: str) -> None:
    x = images().requires_grad_(True)
    out = augment.diff_augment(x, [op], torch.Generator().manual_seed(3))
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert not torch.equal(out, x)
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    if op == "color":
        assert out.abs().max() <= 5  # brightness ±0.5, saturation ×2, contrast ×1.5 of values in [-1, 1]
    else:  # translation and cutout only move or zero pixels
        vals = set(x.detach().flatten().tolist()) | {0.0}
        assert set(out.detach().flatten().tolist()) <= vals


def test_diffaug_is_deterministic_in_the_generator_and_per_image() -> None:
    ops = ("color", "translation", "cutout")
    a = augment.diff_augment(images(), ops, torch.Generator().manual_seed(5))
    b = augment.diff_augment(images(), ops, torch.Generator().manual_seed(5))
    c = augment.diff_augment(images(), ops, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    same = augment.diff_augment(images(n=1).expand(8, -1, -1, -1), ops, torch.Generator().manual_seed(5))
    assert not torch.equal(same[0], same[1])  # each image gets its own draw


def test_diffaug_p_augments_that_share_of_the_images_and_p_1_is_the_plain_op() -> None:
    x, ops = images(n=64), ("translation",)
    plain = augment.diff_augment(x, ops, torch.Generator().manual_seed(4))
    assert torch.equal(augment.diff_augment(x, ops, torch.Generator().manual_seed(4), p=1.0), plain)
    assert torch.equal(augment.diff_augment(x, ops, torch.Generator().manual_seed(4), p=0.0), x)
    half = augment.diff_augment(x, ops, torch.Generator().manual_seed(4), p=0.5)
    untouched = torch.tensor([torch.equal(h, xi) for h, xi in zip(half, x)])
    # The images that moved moved exactly as with p = 1 (the same draws), the others are the input.
    assert all(torch.equal(h, pl) for h, pl, u in zip(half, plain, untouched) if not u)
    assert 16 <= int(untouched.sum()) <= 48  # about half of 64 (a zero shift also leaves an image)


def test_translation_shifts_and_cutout_covers_a_quarter() -> None:
    x = images(n=16)
    moved = augment.translation(x, torch.Generator().manual_seed(0))
    assert all(
        any(
            torch.equal(m[:, 4:-4, 4:-4], torch.roll(xi, (dy, dx), (1, 2))[:, 4:-4, 4:-4])
            for dy in range(-4, 5)
            for dx in range(-4, 5)
        )
        for m, xi in zip(moved, x)
    )
    zeroed = (augment.cutout(torch.ones(64, 3, 32, 32), torch.Generator().manual_seed(0)) == 0).float()
    frac = zeroed.mean(dim=(1, 2, 3))
    assert (frac > 0).all() and (frac <= 0.25).all() and frac.mean() > 0.15


# ----------------------------------------------------------------------------- spectral norm, EMA


def test_spectral_norm_bounds_every_d_conv_and_drops_batchnorm() -> None:
    _, d = build_models(CFG, seed=0, gan=GANConfig(spectral_norm=True))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in d.modules())
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(torch.nn.utils.parametrize.is_parametrized(m, "weight") for m in convs)
    d.train()
    with torch.no_grad():
        for _ in range(5):  # each training forward runs one power iteration
            d(images())
        sigmas = [torch.linalg.matrix_norm(m.weight.flatten(1), ord=2).item() for m in convs]
    assert sigmas == pytest.approx([1.0] * len(convs), abs=0.02)
    raw = [
        torch.linalg.matrix_norm(m.parametrizations.weight.original.flatten(1), ord=2).item() for m in convs
    ]
    assert min(raw) < 0.9 or max(raw) > 1.1  # it really rescaled something


def test_d_norm_choices() -> None:
    def kinds(gan: GANConfig) -> set[str]:
        return {type(m).__name__ for m in build_models(CFG, gan=gan)[1].modules()}

    assert "BatchNorm2d" in kinds(GANConfig())
    wgan = kinds(GANConfig(loss="wgan-gp"))
    assert "GroupNorm" in wgan and "BatchNorm2d" not in wgan
    assert "GroupNorm" in kinds(GANConfig(r1_gamma=1.0))
    assert "BatchNorm2d" in kinds(GANConfig(r1_gamma=1.0, d_norm="batch"))  # explicit choice wins
    assert not {"GroupNorm", "BatchNorm2d"} & kinds(GANConfig(d_norm="none"))
    assert not {"GroupNorm", "BatchNorm2d"} & kinds(GANConfig(loss="wgan-gp", spectral_norm=True))


def test_minibatch_std_is_each_strided_groups_feature_spread() -> None:
    x = torch.randn(8, 5, 4, 4, generator=torch.Generator().manual_seed(0))
    y = MinibatchStd(4)(x)
    assert y.shape == (8, 6, 4, 4) and torch.equal(y[:, :5], x)
    for first in (0, 1):  # B/g = 2 groups, image n in group n mod 2
        members = [first, first + 2, first + 4, first + 6]
        spread = x[members].std(dim=0, unbiased=False).mean()
        assert torch.allclose(y[members, 5], spread.expand(4, 4, 4), atol=1e-6)
    same = MinibatchStd(4)(x[:1].expand(4, -1, -1, -1))  # no variety at all → ~0 (the 1e-8 floor)
    assert same[:, 5].max() < 1e-3
    assert MinibatchStd(4)(x[:6]).shape == (6, 6, 4, 4)  # a batch the group does not divide: gcd groups


def test_mbstd_lets_d_see_the_other_images_of_its_group() -> None:
    _, plain = build_models(CFG, seed=0)
    _, mbstd = build_models(CFG, seed=0, gan=GANConfig(mbstd_group=4))
    assert sum(isinstance(m, MinibatchStd) for m in mbstd.modules()) == 1
    a = images()
    b = a.clone()
    b[1:] = images(1)[1:]  # image 0 unchanged, its group mates replaced
    for d, coupled in ((plain, False), (mbstd, True)):
        d.eval()  # BatchNorm on running stats: only the minibatch layer can couple images
        with torch.no_grad():
            assert torch.equal(d(a)[0], d(b)[0]) != coupled
    with pytest.raises(FaceganError, match="--mbstd-group applies to the dcgan discriminator only"):
        build_models(dataclasses.replace(CFG, arch="r3gan"), gan=GANConfig(mbstd_group=4))


def test_ema_reaches_halfway_after_one_half_life() -> None:
    net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    nn.init.zeros_(net[0].weight)
    ema = EMA(net, half_life_kimg=0.4, batch_size=20)  # 400 images = 20 steps of 20
    assert ema.beta == pytest.approx(0.5 ** (20 / 400)) and ema_beta(0.4, 20) == ema.beta
    with torch.no_grad():
        net[0].weight.fill_(1.0)  # a constant target, starting from 0
        net[1].running_mean.fill_(7.0)
    for _ in range(20):
        ema.update(net)
    assert torch.allclose(ema.model[0].weight, torch.full((3, 4), 0.5), atol=1e-6)
    assert torch.equal(ema.model[1].running_mean, net[1].running_mean)  # buffers are copied
    for _ in range(20):
        ema.update(net)
    assert torch.allclose(ema.model[0].weight, torch.full((3, 4), 0.75), atol=1e-6)
    assert not any(p.requires_grad for p in ema.model.parameters()) and not ema.model.training


# ----------------------------------------------------------------------------- the step


STEP_CONFIGS = {
    "hinge": GANConfig(loss="hinge"),
    "lsgan": GANConfig(loss="lsgan"),
    "wgan-gp": GANConfig(loss="wgan-gp"),
    "bce+smoothing+r1": GANConfig(label_smoothing=0.1, r1_gamma=1.0, r1_every=1),
    "dcgan-plus": preset_config("dcgan-plus").gan,
    "sngan-da": preset_config("sngan-da").gan,
    "dcgan-plus+mbstd": dataclasses.replace(preset_config("dcgan-plus").gan, mbstd_group=4),
}


@pytest.mark.parametrize("name", list(STEP_CONFIGS))
def test_each_stabilizer_trains_with_finite_stats(name: str) -> None:
    gan = STEP_CONFIGS[name]
    g, d = build_models(CFG, seed=0, gan=gan)
    opts = make_optimizers(g, d, OptimConfig())
    rng = torch.Generator().manual_seed(0)
    w0 = [p.detach().clone() for p in [*g.parameters(), *d.parameters()]]
    for step in range(3):
        stats = train_step(g, d, *opts, images(step), rng, gan=gan, step=step)
        assert all(s.dim() == 0 and torch.isfinite(s) for s in stats), stats
    assert all(not torch.equal(a, b) for a, b in zip(w0, [*g.parameters(), *d.parameters()]))
    assert all(p.requires_grad for p in d.parameters())
    assert (stats.reg > 0) == (gan.loss == "wgan-gp" or gan.r1_gamma > 0)


def test_penalties_run_in_fp32_under_autocast() -> None:
    gan = GANConfig(loss="wgan-gp", r1_gamma=1.0, r1_every=1)
    g, d = build_models(CFG, seed=0, gan=gan)
    opts = make_optimizers(g, d, OptimConfig())
    rng = torch.Generator().manual_seed(0)
    stats = train_step(g, d, *opts, images(), rng, gan=gan, amp_dtype=torch.bfloat16)
    assert stats.reg.dtype == torch.float32 and torch.isfinite(torch.stack(list(stats))).all()


def test_lazy_r1_runs_every_n_steps() -> None:
    gan = GANConfig(r1_gamma=1.0, r1_every=3)
    g, d = build_models(CFG, seed=0, gan=gan)
    opts = make_optimizers(g, d, OptimConfig())
    rng = torch.Generator().manual_seed(0)
    regs = [train_step(g, d, *opts, images(), rng, gan=gan, step=s).reg.item() for s in range(4)]
    assert regs[0] > 0 and regs[3] > 0 and regs[1] == regs[2] == 0


def test_diffaug_step_is_deterministic_given_rng() -> None:
    gan = GANConfig(diffaug="color,translation,cutout")

    def run(seed: int) -> list[torch.Tensor]:
        g, d = build_models(CFG, seed=0, gan=gan)
        opts = make_optimizers(g, d, OptimConfig())
        rng = torch.Generator().manual_seed(seed)
        for _ in range(2):
            train_step(g, d, *opts, images(), rng, gan=gan)
        return list(g.state_dict().values())

    assert all(torch.equal(a, b) for a, b in zip(run(7), run(7)))
    assert not all(torch.equal(a, b) for a, b in zip(run(7), run(8)))


# ----------------------------------------------------------------------------- config and CLI


def test_config_section_presets_and_old_checkpoints() -> None:
    assert preset_config("dcgan").gan == GANConfig()
    plus = preset_config("dcgan-plus")
    assert plus.model == preset_config("dcgan").model and plus.train == preset_config("dcgan").train
    assert plus.gan.ema_kimg > 0 and plus.gan.diffaug_ops and plus.gan.loss == "bce"
    assert plus.gan.resolved_d_norm == "batch"  # the seed D, plus EMA and DiffAugment
    sn = preset_config("sngan-da")
    assert sn.gan.spectral_norm and sn.gan.loss == "hinge" and sn.gan.resolved_d_norm == "none"
    raw = plus.to_dict()
    assert RunConfig.from_dict(raw) == plus
    del raw["gan"]  # a checkpoint written before the section existed
    assert RunConfig.from_dict(raw).gan == GANConfig()
    tweaked = with_overrides(plus, {"diffaug": "translation", "ema_kimg": 0.0})
    assert tweaked.gan == dataclasses.replace(plus.gan, diffaug="translation", ema_kimg=0.0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"loss": "hinge", "label_smoothing": 0.1}, "bce loss only"),
        ({"loss": "wgan-gp", "d_norm": "batch"}, "per-sample D"),
        ({"diffaug": "color,zoom"}, "--diffaug must be"),
        ({"diffaug": "color,color"}, "--diffaug must be"),
        ({"r1_every": 0}, "--r1-every must be >= 1"),
        ({"ema_kimg": -1.0}, "--ema-kimg must be >= 0"),
        ({"label_smoothing": 1.0}, "--label-smoothing must be in"),
        ({"mbstd_group": -1}, "--mbstd-group must be >= 0"),
        ({"diffaug_p": 1.5}, "--diffaug-p must be in"),
        ({"diffaug_p": float("nan")}, "--diffaug-p must be a finite number"),
    ],
)
def test_bad_stabilizer_settings_are_one_line_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(FaceganError, match=match):
        GANConfig(**kwargs)


TINY = ["--size", "32", "--latent-dim", "16", "--ngf", "8", "--ndf", "8", "--batch-size", "16"]


def test_cli_flags_reach_the_config_and_cannot_change_on_resume(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    assert (
        main(
            [
                "train",
                "--data",
                str(prepared),
                *TINY,
                "--steps",
                "2",
                "--outdir",
                str(runs),
                "--quiet",
                "--loss",
                "hinge",
                "--ema-kimg",
                "1",
                "--spectral-norm",
                "--diffaug",
                "translation,cutout",
                "--r1-gamma",
                "0.5",
                "--r1-every",
                "2",
                "--gp-weight",
                "5",
                "--lr-d",
                "4e-4",
                "--mbstd-group",
                "4",
            ]
        )
        == 0
    )
    (run,) = runs.iterdir()
    gan = json.loads((run / "config.json").read_text())["gan"]
    assert gan == {
        **GANConfig().__dict__,
        "loss": "hinge",
        "ema_kimg": 1.0,
        "spectral_norm": True,
        "diffaug": "translation,cutout",
        "r1_gamma": 0.5,
        "r1_every": 2,
        "gp_weight": 5.0,
        "mbstd_group": 4,
    }
    assert main(["train", "--resume", str(run), "--steps", "4", "--ema-kimg", "2", "--quiet"]) == 2
    assert "--ema-kimg (checkpoint 1.0, given 2.0): cannot change when resuming" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--data",
                str(prepared),
                *TINY,
                "--steps",
                "1",
                "--outdir",
                str(runs),
                "--preset",
                "sngan-da",
                "--no-spectral-norm",
                "--diffaug",
                "none",
                "--quiet",
            ]
        )
        == 0
    )
    latest = max(runs.iterdir())
    gan = json.loads((latest / "config.json").read_text())["gan"]
    assert gan["spectral_norm"] is False and gan["diffaug"] == "" and gan["loss"] == "hinge"


# ----------------------------------------------------------------------------- resume


def test_resume_with_ema_and_diffaug_equals_the_uninterrupted_run(prepared: Path, tmp_path: Path) -> None:
    base = with_overrides(
        preset_config("dcgan-plus"),
        {
            "size": 32,
            "latent_dim": 16,
            "ngf": 8,
            "ndf": 8,
            "batch_size": 16,
            "data": str(prepared),
            "ema_kimg": 0.05,
            "r1_gamma": 0.1,
            "r1_every": 4,
            "steps": 6,
            "ckpt_every": 3,
            "sample_every": 3,
            "num_samples": 4,
        },
    )  # R1 runs at steps 0 and 4: once before and once after the resume
    whole = train(base, tmp_path / "a", quiet=True)
    first = train(base.replace(train=dataclasses.replace(base.train, steps=3)), tmp_path / "b", quiet=True)
    second = train(
        None,
        tmp_path / "b",
        resume=str(first.run_dir),
        overrides_on_resume={"steps": 6},  # type: ignore[arg-type]
        quiet=True,
    )
    assert second.step == whole.step == 6
    a = load_checkpoint(whole.run_dir / "checkpoints" / "latest.pt")
    b = load_checkpoint(second.run_dir / "checkpoints" / "latest.pt")
    for key in ("G", "D", "G_ema"):
        assert a[key].keys() == b[key].keys()
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    assert not all(torch.equal(a["G"][k], a["G_ema"][k]) for k in a["G"])
    # the averaged generator is the one users get: generate and the exported file
    loaded = load_generator(whole.run_dir).state_dict()
    exported = load_file(str(whole.run_dir / "generator.safetensors"))
    assert all(
        torch.equal(loaded[k], a["G_ema"][k]) and torch.equal(exported[k], a["G_ema"][k]) for k in a["G_ema"]
    )
