"""DiffAugment (facegan/data/augment.py): each op, differentiable, deterministic, per image."""

from __future__ import annotations

import pytest
import torch

from facegan.config.schema import DIFFAUG_OPS
from facegan.data import augment
from tests.training.helpers import images

# ----------------------------------------------------------------------------- DiffAugment


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
