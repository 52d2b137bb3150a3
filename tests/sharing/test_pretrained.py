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


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_model_has_a_display_default_measured_on_its_weights(name: str, tmp_path: Path) -> None:
    """<name>.display.yaml holds the page's default variety for the model and the hash of the weights it
    was measured on: new weights under the name fail here until bench/display_truncation.py re-measures
    them. The value loads with the model (and only with the shipped file: a copy elsewhere carries no
    display truncation, as any export without one), and the model card states it."""
    import shutil

    import yaml

    side = pretrained.display_file(pretrained.path(name))
    assert side is not None and side.name == f"{name}.display.yaml"
    raw = yaml.safe_load(side.read_text())
    assert raw["weights_sha256"] == pretrained.weights_sha256(name), (
        f"{name}.safetensors is not the file its display default was measured on; re-measure with "
        f"python bench/display_truncation.py --data {name}=DIR --write"
    )
    t = load_generator(pretrained.path(name)).display_truncation
    assert t == (None if raw["truncation"] == "full" else float(raw["truncation"]))
    shown = "full distribution" if t is None else f"t = {t:g}"
    assert f"display default: {shown}" in pretrained.model_card(name).lower().replace("**", "")
    copy = shutil.copyfile(pretrained.path(name), tmp_path / f"{name}.safetensors")
    assert load_generator(copy).display_truncation is None


@pytest.mark.parametrize("name", SHIPPED)
def test_page_and_api_draw_a_shipped_model_at_its_display_default(name: str) -> None:
    """A request without `truncation` gets the model's display default; `facegan generate` (faces with no
    truncation) stays the full distribution."""
    from fastapi.testclient import TestClient

    from facegan.sampling.generate import to_pil
    from facegan.serve.app import build_app
    from facegan.serve.models import png_bytes

    g = load_generator(pretrained.path(name))
    t = g.display_truncation
    with TestClient(build_app({name: g})) as client:
        served = client.get("/api/face.png?seed=3").content
        page = client.get("/?seed=3").text
    assert served == png_bytes(to_pil(faces(g, [3], truncation=t)[0]))
    if t is not None:  # then it differs from the CLI's default, the full distribution
        assert served != png_bytes(to_pil(faces(g, [3])[0]))
    assert f'data-default-truncation="{t or 0:g}"' in page


def test_the_display_rule_keeps_recall_in_both_spaces() -> None:
    """bench/display_truncation.py picks the smallest t whose recall is within 10% of the untruncated
    one in the face embedding and in the random ResNet-18; none passing means the full distribution."""
    from bench.display_truncation import choose

    def row(t: float | None, face: float, r18: float) -> dict[str, object]:
        return {"truncation": t, "recall": face, "random_recall": r18}

    full = row(None, 0.9, 0.8)
    assert choose([row(1.0, 0.9, 0.5), row(1.5, 0.85, 0.75), row(2.0, 0.9, 0.8), full]) == 1.5
    assert choose([row(1.5, 0.9, 0.71), row(2.0, 0.8, 0.8), full]) is None  # each fails in one space
