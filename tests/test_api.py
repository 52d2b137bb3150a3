"""The Python API (facegan/api.py) and torch.hub (hubconf.py): what docs/python.md promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import facegan
from facegan.errors import FaceganError
from facegan.sampling.generate import faces, interpolation, load_generator, to_pil
from facegan.sharing.pretrained import path as shipped_path

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def celeba() -> facegan.Generator:
    return facegan.load("celeba64", amp="off")


def test_import_facegan_stays_cheap() -> None:
    code = (
        "import sys, facegan; assert callable(facegan.load); print(sorted(m for m in ("
        "'torch', 'mlflow', 'wandb', 'huggingface_hub', 'onnx') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code.replace("assert callable(facegan.load); ", "")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "[]", "import facegan must not import torch or any optional extra"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['torch']", "facegan.load needs torch, never the optional extras"


def test_generate_gives_the_faces_the_cli_draws(celeba: facegan.Generator) -> None:
    want = faces(load_generator(shipped_path("celeba64")), [5, 6, 7], truncation=1.5)
    pil = celeba.generate(seeds=[5, 6, 7], truncation=1.5)
    assert [im.tobytes() for im in pil] == [to_pil(img).tobytes() for img in want]
    assert torch.equal(celeba.generate(seeds=5, n=3, truncation=1.5, output="tensor"), want)
    assert torch.equal(celeba.generate(n=2, output="tensor"), celeba.generate(seeds=[0, 1], output="tensor"))
    assert celeba.generate(n=4, output="grid").size == (2 + 2 * 66, 2 + 2 * 66)
    assert celeba.latent_dim == 100 and celeba.size == 64


def test_calling_it_is_the_network(celeba: facegan.Generator) -> None:
    z = torch.randn(2, 100)
    with torch.no_grad():
        assert torch.equal(celeba(z), celeba.model(z[:, :, None, None]))


def test_interpolate_walks_from_seed_to_seed(celeba: facegan.Generator) -> None:
    walk = celeba.interpolate(seeds=[3, 17], frames=5)
    assert len(walk) == 5 and all(isinstance(im, Image.Image) for im in walk)
    ends = celeba.generate(seeds=[3, 17])
    assert walk[0].tobytes() == ends[0].tobytes() and walk[-1].tobytes() == ends[1].tobytes()
    assert torch.equal(
        celeba.interpolate([3, 17], 5, output="tensor"),
        interpolation(load_generator(shipped_path("celeba64")), [3, 17], 5),
    )


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"seeds": [-1]}, "between 0"),
        ({"n": 0}, "between 1"),
        ({"seeds": [1, 2], "n": 3}, "first seed"),
        ({"output": "jpeg"}, "output must be"),
        # these were silently rounded, a character loop and a
        # RuntimeError from deep in torch
        ({"seeds": [1.5]}, "seeds must be integers"),
        ({"seeds": "7"}, "seeds must be integers"),
        ({"seeds": 1, "n": 2, "batch_size": 0}, "batch_size"),
    ],
)
def test_bad_arguments_are_one_clear_error(celeba: facegan.Generator, kwargs: dict, word: str) -> None:
    with pytest.raises(FaceganError, match=word):
        celeba.generate(**kwargs)


def test_numpy_integer_seeds_are_seeds(celeba: facegan.Generator) -> None:
    import numpy as np

    want = celeba.generate([3, 4], output="tensor")
    assert torch.equal(celeba.generate(np.arange(3, 5), output="tensor"), want)
    assert torch.equal(celeba.generate(np.int64(3), n=2, output="tensor"), want)


def test_load_reads_every_kind_of_source(tmp_path: Path, celeba: facegan.Generator) -> None:
    file = celeba.export(tmp_path / "c.safetensors")
    again = facegan.load(file, amp="off")
    assert torch.equal(again.generate(n=2, output="tensor"), celeba.generate(n=2, output="tensor"))
    with pytest.raises(FaceganError, match="not a file or folder"):
        facegan.load("no-such-model")
    with pytest.raises(FaceganError, match="no generator given"):
        facegan.load("")  # was "checkpoint 'latest.pt' does not exist" (Path("") is the current folder)


def test_train_and_resume_from_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEGAN_CACHE", str(tmp_path / "cache"))
    small = {
        "size": 32,
        "latent_dim": 16,
        "ngf": 8,
        "ndf": 8,
        "batch_size": 8,
        "synthetic_count": 16,
        "device": "cpu",
    }
    result = facegan.train(preset="dcgan", steps=2, outdir=tmp_path / "runs", quiet=True, **small)
    assert result.step == 2 and (result.run_dir / "generator.safetensors").is_file()
    result = facegan.train(resume=result.run_dir, steps=3, quiet=True)
    assert result.step == 3
    g = facegan.load(result.run_dir)
    assert g.size == 32 and len(g.generate(n=2)) == 2
    with pytest.raises(FaceganError, match="--size must be"):
        facegan.train(size=48, outdir=tmp_path / "runs", quiet=True)


def test_torch_hub_loads_a_ready_generator(celeba: facegan.Generator) -> None:
    g = torch.hub.load(str(REPO), "celeba64", source="local", amp="off", trust_repo=True)
    assert isinstance(g, facegan.Generator) and not g.training
    assert torch.equal(g.generate(n=2, output="tensor"), celeba.generate(n=2, output="tensor"))
    fresh = torch.hub.load(str(REPO), "anime64", source="local", pretrained=False, trust_repo=True)
    assert fresh.size == 64 and fresh.latent_dim == 100
