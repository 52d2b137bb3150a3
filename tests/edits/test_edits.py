"""Attribute edits (facegan.edits): directions, their file, the CLI, the Python API and the finders, on
tiny generators and data made here (nothing downloaded, no real faces)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import facegan
from facegan.cli.main import main
from facegan.config.schema import ModelConfig
from facegan.edits.calibrate import shortest_step
from facegan.edits.classifier import labels_for, read_attributes, split_halves
from facegan.edits.interfacegan import conditioned, fit_normal
from facegan.edits.unsupervised import first_layer_weight, ganspace, named, read_names, sefa, unnamed
from facegan.errors import FaceganError
from facegan.networks.factory import build_models
from facegan.sampling.directions import find_directions, load_directions, parse_edits, sidecar
from facegan.sampling.generate import faces, load_generator
from facegan.sampling.render import amounts, edit_faces, sweep
from facegan.sharing import pretrained
from tests.edits.helpers import NAMES, tiny_directions

# ----------------------------------------------------------------------------- directions


def test_amount_zero_is_the_unedited_face_bit_for_bit(model: Path) -> None:
    g = load_generator(model)
    seeds = [5, 0, 11]
    plain = faces(g, seeds)
    assert torch.equal(edit_faces(g, g.edits, seeds, {"Smiling": 0.0, "Eyeglasses": 0.0}), plain)
    assert torch.equal(edit_faces(g, g.edits, seeds, {}), plain)
    edited = edit_faces(g, g.edits, seeds, {"Smiling": 1.0})
    assert not torch.equal(edited, plain)
    # a seed's edited face does not depend on the faces drawn with it
    assert torch.equal(edit_faces(g, g.edits, [11], {"Smiling": 1.0}), edited[2:])


def test_apply_moves_z_by_the_calibrated_step_of_each_side() -> None:
    d = tiny_directions()
    z = torch.randn(4, 16, 1, 1)
    assert d.apply(z, {"Smiling": 0.0}) is z
    up = d.apply(z, {"Smiling": 1.0}) - z
    down = d.apply(z, {"Smiling": -0.5}) - z
    assert torch.allclose(up[0, :, 0, 0], d.vectors[0] * 3.0, atol=1e-6)  # +1 → steps[0, 1]
    assert torch.allclose(down[0, :, 0, 0], d.vectors[0] * -1.0, atol=1e-6)  # -0.5 × steps[0, 0]


def test_directions_file_round_trips_and_sits_beside_the_weights(tmp_path: Path, model: Path) -> None:
    d = load_directions(sidecar(model))
    assert d.names == NAMES and torch.equal(d.vectors, tiny_directions().vectors)
    assert sidecar(tmp_path / "x.safetensors").name == "x.edits.safetensors"
    assert sidecar(tmp_path / "hub" / "model.safetensors").name == "edits.safetensors"
    assert find_directions(tmp_path / "none.safetensors") is None
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(FaceganError, match="could not read edit directions"):
        load_directions(bad)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("Frowning=1", "unknown edit 'Frowning'; this model's edits: Smiling, Blond_Hair, Eyeglasses"),
        ("Smiling=1.5", "from -1 to 1"),
        ("Smiling=-1.01", "from -1 to 1"),
        ("Smiling=nan", "from -1 to 1"),
        ("Smiling=inf", "from -1 to 1"),
        ("Smiling", "bad edit 'Smiling': use NAME=AMOUNT"),
        ("Smiling=lots", "bad edit"),
        ("Smiling=1,Smiling=0", "given twice"),
    ],
)
def test_bad_edits_are_one_line_naming_the_choices(spec: str, message: str) -> None:
    with pytest.raises(FaceganError, match=message.replace("(", r"\(")) as err:
        parse_edits(spec, tiny_directions())
    assert "\n" not in str(err.value)


def test_edit_specs_in_cli_and_url_form() -> None:
    d = tiny_directions()
    assert parse_edits(["Smiling=1", "Blond_Hair=-0.5"], d) == {"Smiling": 1.0, "Blond_Hair": -0.5}
    assert parse_edits("Smiling:1,Eyeglasses:0.5", d) == {"Smiling": 1.0, "Eyeglasses": 0.5}
    assert parse_edits([], d) == {}
    with pytest.raises(FaceganError, match="no edit directions"):
        parse_edits("Smiling:1", None)


# ----------------------------------------------------------------------------- CLI and Python API


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_edits_list_and_sweep(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["generate", "--checkpoint", str(model), "--amp", "off", "--seed", "0-2"]
    rc, out, _ = run([*base, "--list-edits"], capsys)
    assert rc == 0 and out.split() == NAMES
    rc, out, _ = run([*base, "--edit", "Smiling=0", "--out", str(tmp_path / "zero.png")], capsys)
    assert rc == 0
    rc, _, _ = run([*base, "--out", str(tmp_path / "plain.png")], capsys)
    pixels = [np.asarray(Image.open(tmp_path / f"{n}.png")) for n in ("zero", "plain")]
    assert np.array_equal(*pixels)
    rc, out, _ = run(
        [*base, "--edit", "Smiling=1", "--edit", "Blond_Hair=-0.5", "--out", str(tmp_path / "e.png")], capsys
    )
    assert rc == 0 and "Smiling=1, Blond_Hair=-0.5" in out
    rc, out, _ = run(
        [*base, "--edit-sweep", "Eyeglasses", "--sweep-columns", "5", "--out", str(tmp_path / "sweep.png")],
        capsys,
    )
    assert rc == 0
    assert Image.open(tmp_path / "sweep.png").size == (5 * 34 + 2, 3 * 34 + 2)  # 5 columns × 3 seeds


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--edit", "Frowning=1"], "unknown edit 'Frowning'; this model's edits: Smiling, Blond_Hair"),
        (["--edit", "Smiling=2"], "from -1 to 1"),
        (["--edit", "Smiling"], "bad edit"),
        (["--edit-sweep", "Frowning"], "unknown edit 'Frowning'"),
    ],
)
def test_cli_edit_errors_exit_2_with_one_line(
    model: Path, flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, err = run(
        [
            "generate",
            "--checkpoint",
            str(model),
            "--seed",
            "0",
            "--n",
            "2",
            "--out",
            str(tmp_path / "x.png"),
            *flags,
        ],
        capsys,
    )
    assert rc == 2 and message in err and err.count("\n") == 1


def test_cli_model_without_directions_exits_2(
    bare: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, err = run(
        ["generate", "--checkpoint", str(bare), "--edit", "Smiling=1", "--out", str(tmp_path / "x.png")],
        capsys,
    )
    assert rc == 2 and "no edit directions" in err


def test_python_api_edits(model: Path, bare: Path) -> None:
    g = facegan.load(str(model), amp="off")
    assert g.edits == NAMES
    plain = g.generate([3, 4], output="tensor")
    assert torch.equal(g.generate([3, 4], output="tensor", edit={"Smiling": 0.0}), plain)
    assert not torch.equal(g.generate([3, 4], output="tensor", edit={"Smiling": 1.0}), plain)
    with pytest.raises(FaceganError, match="this model's edits: Smiling"):
        g.generate(3, edit={"smiling": 1.0})
    with pytest.raises(FaceganError, match="from -1 to 1"):
        g.generate(3, edit={"Smiling": 3})
    assert facegan.load(str(bare)).edits == []
    with pytest.raises(FaceganError, match="no edit directions"):
        facegan.load(str(bare)).generate(3, edit={"Smiling": 1.0})


def test_export_and_hub_layout_carry_the_edits(model: Path, tmp_path: Path) -> None:
    g = facegan.load(str(model))
    out = g.export(tmp_path / "out" / "copy.safetensors")
    assert load_directions(sidecar(out)).names == NAMES
    hub = g.export(tmp_path / "hub", format="hub")
    assert (hub / "edits.safetensors").is_file()
    assert facegan.load(str(hub)).edits == NAMES


def test_shipped_models_have_their_edits() -> None:
    assert pretrained.available() == ["anime64", "celeba64"]  # the edits files are not generators
    celeba = find_directions(pretrained.path("celeba64"))
    assert celeba is not None and len(celeba.names) >= 8
    assert {
        "Smiling",
        "Male",
        "Young",
        "Blond_Hair",
        "Black_Hair",
        "Eyeglasses",
        "Bangs",
        "Mouth_Slightly_Open",
    } <= set(celeba.names)
    anime = find_directions(pretrained.path("anime64"))
    assert anime is not None and len(anime.names) >= 5
    for d in (celeba, anime):
        assert d.latent_dim == 100 and (d.steps > 0).all()


# ----------------------------------------------------------------------------- finding and measuring


@pytest.mark.parametrize("arch", ["dcgan", "r3gan"])
def test_sefa_directions_are_the_first_layers_top_eigenvectors(arch: str) -> None:
    g, _ = build_models(ModelConfig(size=32, latent_dim=16, ngf=8, ndf=8, arch=arch), seed=0)
    vectors, _ = sefa(g, 4)
    assert torch.allclose(vectors @ vectors.T, torch.eye(4), atol=1e-5)
    a = first_layer_weight(g)
    gains = (a @ vectors.T).norm(dim=0)
    assert torch.all(gains[:-1] >= gains[1:] - 1e-5)  # in order of how much they move the first layer
    random = F.normalize(torch.randn(64, 16), dim=1)
    assert gains[0] >= (a @ random.T).norm(dim=0).max()
    found, _ = ganspace(g, 3, samples=256)
    assert found.shape == (3, 16) and torch.allclose(found.norm(dim=1), torch.ones(3), atol=1e-5)


def test_names_file_picks_flips_and_scales_directions(tmp_path: Path) -> None:
    found = unnamed(torch.eye(4, 16), 3.0, "sefa")
    names = tmp_path / "names.yaml"
    names.write_text("Blond_Hair: {direction: 2, sign: -1}\nBig_Eyes: {direction: 0, step: 2.0}\n")
    d = named(found, read_names(names))
    assert d.names == ["Blond_Hair", "Big_Eyes"]
    assert torch.equal(d.vectors[0], -torch.eye(4, 16)[2]) and d.steps.tolist() == [[3.0, 3.0], [2.0, 2.0]]
    names.write_text("Blond_Hair: {direction: 9}\n")
    with pytest.raises(FaceganError, match="direction 9 does not exist"):
        named(found, read_names(names))
    names.write_text("Blond_Hair: {direction: 1, sign: 2}\n")
    with pytest.raises(FaceganError, match="sign 1 or -1"):
        read_names(names)


def test_fit_normal_recovers_a_planted_boundary_and_conditioning_removes_another() -> None:
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(2000, 16, generator=gen)
    truth = F.normalize(torch.randn(16, generator=gen), dim=0)
    normal, acc = fit_normal(z, z @ truth + 0.1 * torch.randn(2000, generator=gen))
    assert float(normal @ truth) > 0.95 and acc > 0.95
    other = F.normalize(truth + torch.randn(16, generator=gen), dim=0)
    both = torch.stack([normal, other])
    only = conditioned(both, 0, [1])
    assert abs(float(only @ other)) < 1e-5 and abs(float(only.norm()) - 1) < 1e-5


def test_shortest_step_bisects_to_the_first_reaching_step() -> None:
    step, ok = shortest_step(lambda s: s / 4, lambda p: p >= 0.5, 4.0, iters=8)
    assert ok and 2.0 <= step <= 2.0 + 4.0 / 2**8
    assert shortest_step(lambda s: 0.0, lambda p: p >= 0.5, 4.0) == (4.0, False)


def test_attribute_file_reader(tmp_path: Path) -> None:
    path = tmp_path / "list_attr_celeba.txt"
    path.write_text("2\nSmiling Male\n000001.jpg -1  1\n000002.jpg  1 -1\n")
    names, rows = read_attributes(path)
    assert names == ["Smiling", "Male"] and rows["000002.jpg"].tolist() == [1, -1]
    assert labels_for(["img_align_celeba/000001.jpg"], rows).tolist() == [[0.0, 1.0]]
    with pytest.raises(FaceganError, match="no attribute row"):
        labels_for(["img_align_celeba/000009.jpg"], rows)
    path.write_text("2\nSmiling Male\n000001.jpg -1  0\n")
    with pytest.raises(FaceganError, match="line 3"):
        read_attributes(path)
    a, b = split_halves(10)
    assert len(a) == len(b) == 5 and not set(a) & set(b)


def test_sweep_rows_are_seeds_and_columns_amounts(model: Path) -> None:
    g = load_generator(model)
    images = sweep(g, g.edits, [1, 2], "Smiling", 5)
    assert amounts(5) == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert images.shape == (10, 3, 32, 32)
    assert torch.equal(images[2], faces(g, [1])[0]) and torch.equal(images[7], faces(g, [2])[0])
    with pytest.raises(FaceganError, match="2 to 21 columns"):
        amounts(1)


def test_directions_command_writes_directions_and_a_sweep_each(
    bare: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "dirs.safetensors"
    rc, text, _ = run(
        ["directions", "--checkpoint", str(bare), "--out", str(out), "--count", "3", "--seed", "0-1"], capsys
    )
    assert rc == 0 and "wrote 3 directions (sefa)" in text
    assert load_directions(out).names == ["d0", "d1", "d2"]
    assert sorted(p.name for p in (tmp_path / "dirs-sweeps").iterdir()) == ["d0.png", "d1.png", "d2.png"]
    names = tmp_path / "names.yaml"
    names.write_text("Glow: {direction: 1, sign: -1}\n")
    rc, _, _ = run(
        [
            "directions",
            "--checkpoint",
            str(bare),
            "--out",
            str(out),
            "--count",
            "3",
            "--names",
            str(names),
            "--seed",
            "0",
        ],
        capsys,
    )
    assert rc == 0 and load_directions(out).names == ["Glow"]
    rc, _, err = run(
        [
            "generate",
            "--checkpoint",
            str(bare),
            "--edits",
            str(out),
            "--edit",
            "Glow=-1",
            "--seed",
            "0",
            "--n",
            "2",
            "--out",
            str(tmp_path / "g.png"),
        ],
        capsys,
    )
    assert rc == 0, err
    rc, _, err = run(["directions", "--checkpoint", str(bare), "--out", str(out), "--attrs", "a.txt"], capsys)
    assert rc == 2 and "both --attrs and --data" in err


def test_evaluate_edits_refuses_a_model_without_edits(
    bare: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, err = run(
        [
            "evaluate-edits",
            "--checkpoint",
            str(bare),
            "--data",
            str(tmp_path),
            "--attrs",
            str(tmp_path / "a.txt"),
        ],
        capsys,
    )
    assert rc == 2 and "no edit directions" in err


def test_torch_hub_entry_points_carry_the_edits() -> None:
    g = torch.hub.load(str(Path(__file__).resolve().parents[2]), "anime64", source="local", amp="off")
    assert "Blond_Hair" in g.edits
    plain = g.generate([1], output="tensor")
    assert torch.equal(g.generate([1], output="tensor", edit={"Blond_Hair": 0}), plain)
