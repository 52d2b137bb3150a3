"""Seeds, truncation and latent walks: reproducible faces from a generator."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from facegan.cli.main import main
from facegan.config.schema import ModelConfig
from facegan.errors import FaceganError
from facegan.networks.checkpoint import export_generator
from facegan.networks.factory import build_models
from facegan.sampling.generate import faces, interpolation, latents, load_generator, parse_seeds

CFG = ModelConfig(size=32, latent_dim=16, ngf=8, ndf=8)


@pytest.fixture
def g() -> torch.nn.Module:
    gen, _ = build_models(CFG, seed=4)
    return gen.eval()


def test_parse_seeds() -> None:
    assert parse_seeds("7") == [7]
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("1, 5,9-10") == [1, 5, 9, 10]
    for bad in ("x", "5-2", "-3", "1,,2"):
        with pytest.raises(FaceganError):
            parse_seeds(bad)


def test_latents_are_per_seed_and_truncation_bounds_them() -> None:
    z = latents([3, 4], 512)
    assert torch.equal(latents([4], 512)[0], z[1])
    zt = latents([3, 4], 512, truncation=0.5)
    assert zt.abs().max() <= 0.5
    assert torch.equal(zt, latents([3, 4], 512, truncation=0.5))
    # components already inside the bound are kept as drawn
    inside = z[0].abs() <= 0.5
    assert torch.equal(zt[0][inside], z[0][inside])
    # NaN compared false everywhere and meant "off"; tiny values redrew forever: both refused now
    for bad in (0, -1.0, 0.1, 1e-9, float("nan"), float("inf")):
        with pytest.raises(FaceganError, match=r"truncation must be a number >= 0\.2"):
            latents([1], 8, truncation=bad)


def test_interpolation_passes_through_the_seeds(g: torch.nn.Module) -> None:
    walk = interpolation(g, [1, 2, 3], frames=5)
    assert walk.shape == (9, 3, 32, 32)  # 5 + 5 frames, the shared middle seed once
    ends = faces(g, [1, 2, 3])
    for i, frame in ((0, 0), (1, 4), (2, 8)):
        assert torch.allclose(walk[frame], ends[i], atol=1e-5)
    with pytest.raises(FaceganError, match="at least two seeds"):
        interpolation(g, [1], frames=5)


def test_cli_interpolate_writes_gif(g: torch.nn.Module, tmp_path: Path) -> None:
    path = export_generator(g, CFG, tmp_path / "g.safetensors")
    out = tmp_path / "walk.gif"
    assert (
        main(
            [
                "generate",
                "--checkpoint",
                str(path),
                "--interpolate",
                "--seed",
                "5,9",
                "--frames",
                "6",
                "--display-size",
                "64",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    with Image.open(out) as gif:
        assert gif.size == (64, 64) and gif.n_frames >= 2
    assert (
        main(
            [
                "generate",
                "--checkpoint",
                str(path),
                "--interpolate",
                "--seed",
                "5,9",
                "--out",
                str(tmp_path / "walk.webm"),
            ]
        )
        == 2
    )


def test_cli_truncation_changes_faces_reproducibly(g: torch.nn.Module, tmp_path: Path) -> None:
    path = export_generator(g, CFG, tmp_path / "g.safetensors")
    for name, extra in (("a", []), ("b", ["--truncation", "0.7"]), ("c", ["--truncation", "0.7"])):
        main(
            [
                "generate",
                "--checkpoint",
                str(path),
                "--seed",
                "0-3",
                "--out",
                str(tmp_path / f"{name}.png"),
                *extra,
            ]
        )
    read = {n: (tmp_path / f"{n}.png").read_bytes() for n in "abc"}
    assert read["b"] == read["c"] and read["a"] != read["b"]
    assert (
        main(["generate", "--checkpoint", str(path), "--truncation", "nan", "--out", str(tmp_path / "d.png")])
        == 2
    )
    assert not (tmp_path / "d.png").exists()


def test_fast_inference_keeps_seeds_and_batches_consistent(tmp_path: Path) -> None:
    """`amp="auto"` (the opt-in fast path; fp32 is the default) may round differently from fp32, but a
    seed's face is still independent of its batch, and within bf16 rounding of the fp32 face."""
    from facegan.config.schema import ModelConfig
    from facegan.networks.checkpoint import export_generator
    from facegan.networks.factory import build_models
    from facegan.runtime.perf import InferenceGenerator, Perf, for_inference

    g, _ = build_models(ModelConfig(size=32, latent_dim=16, ngf=8, ndf=8), seed=0)
    path = export_generator(g, g.cfg, tmp_path / "g.safetensors")
    exact = load_generator(path, amp="off")
    assert not isinstance(exact, InferenceGenerator)
    bf16 = for_inference(load_generator(path), torch.device("cpu"), "bf16")
    assert isinstance(bf16, InferenceGenerator) and bf16.cfg == g.cfg
    together, alone = faces(bf16, [3, 4, 5]), faces(bf16, [4])
    assert torch.equal(together[1:2], alone)
    assert 0 < (together - faces(exact, [3, 4, 5])).abs().max() < 0.05  # bf16 really ran, close to fp32
    assert for_inference(g, torch.device("cpu"), "off") is g
    assert Perf(torch.bfloat16, True, None, True, False).amp_dtype == bf16.amp_dtype


def test_load_generator_picks_or_refuses_devices(tmp_path: Path) -> None:
    """`device="auto"` loads (here on the CPU); a device that does not exist is one clear error."""
    from facegan.config.schema import ModelConfig
    from facegan.errors import FaceganError
    from facegan.networks.checkpoint import export_generator
    from facegan.networks.factory import build_generator
    from facegan.sampling.generate import load_generator

    cfg = ModelConfig(size=32, latent_dim=8, ngf=4, ndf=4)
    path = export_generator(build_generator(cfg), cfg, tmp_path / "g.safetensors")
    g = load_generator(path, device="auto")
    assert next(g.parameters()).device.type in ("cpu", "cuda", "mps")
    with pytest.raises(FaceganError, match="unknown --device 'gpu9'"):
        load_generator(path, device="gpu9")


@pytest.mark.parametrize("arch", ["dcgan", "r3gan"])
def test_a_seed_is_the_same_face_alone_or_anywhere_in_a_grid(arch: str) -> None:
    """Every pass of G runs a fixed number of latents: in fp32 the r3gan G's linear basis rounds
    differently for different batch sizes, which would move a seed's pixels between the CLI's grid,
    a single face and the server."""
    g, _ = build_models(ModelConfig(size=64, latent_dim=100, ngf=16, ndf=16, arch=arch), seed=1)
    g.eval()
    grid_faces = faces(g, list(range(13)))
    for seed in (0, 5, 12):
        assert torch.equal(faces(g, [seed])[0], grid_faces[seed])


def test_an_export_keeps_its_display_truncation_and_generate_ignores_it(
    g: torch.nn.Module, tmp_path: Path
) -> None:
    """A generator's display truncation (the page's default variety for it) is stored in the export's
    metadata and read back by load_generator; re-exports (CLI and Python API, --half too) keep it; a
    generator without one exports without one (the full distribution); faces drawn from Python or the
    CLI stay the full distribution either way."""
    from safetensors import safe_open

    import facegan

    def stored(path: Path) -> str | None:
        with safe_open(str(path), "pt") as fh:
            return (fh.metadata() or {}).get("display_truncation")

    bare = export_generator(g, CFG, tmp_path / "bare.safetensors")
    assert stored(bare) is None and load_generator(bare).display_truncation is None
    g.display_truncation = 1.75
    path = export_generator(g, CFG, tmp_path / "g.safetensors")
    assert stored(path) == "1.75" and load_generator(path).display_truncation == 1.75
    loaded = facegan.load(str(path))
    assert loaded.display_truncation == 1.75
    for out, extra in ((tmp_path / "cli.safetensors", []), (tmp_path / "half.safetensors", ["--half"])):
        assert main(["export", "--checkpoint", str(path), "--out", str(out), *extra]) == 0
        assert load_generator(out).display_truncation == 1.75
    again = loaded.export(tmp_path / "api.safetensors")
    assert facegan.load(str(again)).display_truncation == 1.75
    # set from Python before an export; None removes it; a bad value is one clear error
    loaded.display_truncation = None
    assert stored(loaded.export(tmp_path / "none.safetensors")) is None
    with pytest.raises(FaceganError, match=r"display_truncation must be a truncation from 0\.2 to 4\.0"):
        loaded.display_truncation = 0.1
    # faces are the full distribution unless asked: the same pixels as the file without the field
    assert torch.equal(facegan.load(str(path)).generate(seeds=[1, 2], output="tensor"), faces(g, [1, 2]))
    cli = [
        main(["generate", "--checkpoint", str(p), "--seed", "0-3", "--out", str(p) + ".png"])
        for p in (bare, path)
    ]
    assert (
        cli == [0, 0] and Image.open(str(bare) + ".png").tobytes() == Image.open(str(path) + ".png").tobytes()
    )


@pytest.mark.parametrize("bad", ["0.1", "9", "nan", "inf", "lots", ""])
def test_a_bad_stored_display_truncation_is_one_clear_error(
    g: torch.nn.Module, tmp_path: Path, bad: str
) -> None:
    path = export_generator(g, CFG, tmp_path / "g.safetensors", extra={"display_truncation": bad})
    with pytest.raises(FaceganError, match=r"display_truncation must be a truncation from 0\.2 to 4\.0"):
        load_generator(path)
