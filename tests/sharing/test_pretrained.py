"""The generators shipped inside the package work offline, right after install."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from facegan.cli.main import main
from facegan.errors import FaceganError
from facegan.sampling.generate import faces, load_generator
from facegan.sharing import pretrained

SHIPPED = ("celeba64", "anime64")


def test_both_generators_ship_with_model_cards() -> None:
    assert set(SHIPPED) <= set(pretrained.available())
    for name in SHIPPED:
        path = pretrained.path(name)
        assert path.stat().st_size <= 10 * 2**20  # ≤ 10 MB each
        card = pretrained.model_card(name)
        for needed in ("facegan train", "Licence", "Steps", "Wall time", "Device", "c2st"):
            assert needed in card, (name, needed)
    assert "non-commercial" in pretrained.model_card("celeba64")


@pytest.mark.parametrize("name", SHIPPED)
def test_pretrained_generates_varied_64px_faces(name: str) -> None:
    g = load_generator(pretrained.path(name))
    assert g.cfg.size == 64
    imgs = faces(g, list(range(8)))
    assert imgs.shape == (8, 3, 64, 64)
    # trained, not noise: neighbouring pixels agree far more than in random images, and faces differ
    smooth = (imgs[..., 1:, :] - imgs[..., :-1, :]).abs().mean()
    assert smooth < 0.5 * imgs.std()
    assert (imgs[0] - imgs[1]).abs().mean() > 0.05
    assert torch.equal(imgs[:2], faces(g, [0, 1]))


def test_cli_generate_pretrained(tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    assert main(["generate", "--pretrained", "celeba64", "--n", "16", "--out", str(out)]) == 0
    assert Image.open(out).size == (4 * 66 + 2, 4 * 66 + 2)


def test_unknown_pretrained_name() -> None:
    with pytest.raises(FaceganError, match="unknown pretrained generator 'ffhq1024'"):
        pretrained.path("ffhq1024")
