"""ONNX export: `facegan export --format onnx` writes one .onnx file with a dynamic batch whose output
onnxruntime computes as PyTorch does, for both architectures; a generator's attribute edits become a
second input, `edits`, computed as `Directions.apply` does."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facegan.cli.main import main
from facegan.config.schema import ModelConfig
from facegan.errors import FaceganError
from facegan.networks.checkpoint import export_generator
from facegan.networks.factory import build_models
from facegan.sampling.directions import Directions, sidecar

EDITS = ["Smiling", "Blond_Hair", "Young"]


def tiny_export(tmp_path: Path, arch: str, g_upsample: str = "convt") -> Path:
    """A small, randomly initialised generator of `arch` exported as .safetensors."""
    cfg = ModelConfig(size=32, latent_dim=16, ngf=16, ndf=16, arch=arch, g_upsample=g_upsample)
    g, _ = build_models(cfg, seed=1)
    return export_generator(g, cfg, tmp_path / f"{arch}.safetensors")


@pytest.mark.parametrize("arch,g_upsample", [("dcgan", "convt"), ("dcgan", "resize"), ("r3gan", "convt")])
def test_onnxruntime_matches_pytorch_for_batch_1_and_5(arch: str, g_upsample: str, tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    from facegan.sampling.generate import load_generator

    source = tiny_export(tmp_path, arch, g_upsample)
    out = tmp_path / "g.onnx"
    assert main(["export", "--checkpoint", str(source), "--out", str(out)]) == 0  # .onnx picks the format
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("g.onnx")] == ["g.onnx"]  # one file
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (inp,), (outp,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, outp.name) == ("z", "images")
    assert isinstance(inp.shape[0], str) and inp.shape[1] == 16, "the batch must be dynamic"
    assert "facegan_edits" not in session.get_modelmeta().custom_metadata_map  # no edits: z alone
    g = load_generator(source)
    for batch in (1, 5):
        z = torch.randn(batch, 16, generator=torch.Generator().manual_seed(batch))
        got = session.run(None, {"z": z.numpy()})[0]
        with torch.no_grad():
            want = g(z[:, :, None, None]).numpy()
        assert got.shape == (batch, 3, 32, 32)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    recorded = json.loads(props["facegan_model_config"])
    assert (recorded["arch"], recorded["g_upsample"]) == (arch, g_upsample)


def test_seeded_faces_match_through_onnx(tmp_path: Path) -> None:
    """The documented way to reproduce facegan's seed numbering outside PyTorch: draw z with
    facegan.sampling.generate.latents and run the ONNX graph on it."""
    import onnxruntime as ort

    from facegan.sampling.generate import faces, latents, load_generator

    source = tiny_export(tmp_path, "dcgan")
    out = tmp_path / "g.onnx"
    assert main(["export", "--checkpoint", str(source), "--format", "onnx", "--out", str(out)]) == 0
    session = ort.InferenceSession(str(tmp_path / "g.onnx"), providers=["CPUExecutionProvider"])
    z = latents([3, 17], 16).flatten(1).numpy()
    np.testing.assert_allclose(
        session.run(None, {"z": z})[0], faces(load_generator(source), [3, 17]).numpy(), atol=1e-4, rtol=0
    )


def test_missing_onnx_package_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    source = tiny_export(tmp_path, "dcgan")
    assert main(["export", "--checkpoint", str(source), "--out", str(tmp_path / "g.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'facegan[onnx]'" in err
    assert not (tmp_path / "g.onnx").exists()


# ----------------------------------------------------------------------------- attribute edits


def vivid_export(folder: Path) -> Path:
    """tiny_export's dcgan with its last layer scaled so the pre-tanh values have unit spread: an
    untrained G draws near-uniform grey, on which an edit would move the pixels by only ~1e-3."""
    cfg = ModelConfig(size=32, latent_dim=16, ngf=16, ndf=16)
    g, _ = build_models(cfg, seed=1)
    g.eval()
    with torch.no_grad():
        pre = g.main[:-1](torch.randn(8, 16, 1, 1, generator=torch.Generator().manual_seed(0)))
        g.main[-2].weight.mul_(1.0 / pre.std().clamp_min(1e-8))
    return export_generator(g, cfg, folder / "vivid.safetensors")


def tiny_edited_export(tmp_path: Path) -> Path:
    """vivid_export's generator with three edits beside it (as the shipped models have), each with its
    own steps toward -1 and +1."""
    source = vivid_export(tmp_path)
    vectors = F.normalize(torch.randn(len(EDITS), 16, generator=torch.Generator().manual_seed(5)), dim=1)
    steps = torch.tensor([[2.0, 3.0], [4.0, 1.5], [2.5, 2.5]])
    Directions(EDITS, vectors, steps).save(sidecar(source))
    return source


def edited_session(tmp_path: Path) -> tuple[object, torch.nn.Module]:
    """(onnxruntime session of the edited tiny generator's export, the generator loaded in PyTorch)."""
    import onnxruntime as ort

    from facegan.sampling.generate import load_generator

    source = tiny_edited_export(tmp_path)
    out = tmp_path / "g.onnx"
    assert main(["export", "--checkpoint", str(source), "--out", str(out)]) == 0
    g = load_generator(source)
    assert edits_of(g).names == EDITS
    return ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]), g


def edits_of(g: torch.nn.Module) -> Directions:
    directions = g.edits
    assert isinstance(directions, Directions)
    return directions


def torch_faces(g: torch.nn.Module, z: torch.Tensor, amounts: torch.Tensor | None = None) -> np.ndarray:
    """PyTorch's faces of z (N, latent), each row edited by its row of `amounts` through Directions.apply."""
    rows = z[:, :, None, None]
    if amounts is not None:
        rows = torch.cat(
            [
                edits_of(g).apply(rows[i : i + 1], dict(zip(EDITS, a.tolist(), strict=True)))
                for i, a in enumerate(amounts)
            ]
        )
    with torch.no_grad():
        faces: np.ndarray = g(rows).numpy()
    return faces


def run(session: object, z: torch.Tensor, amounts: torch.Tensor) -> np.ndarray:
    out: np.ndarray = session.run(None, {"z": z.numpy(), "edits": amounts.numpy()})[0]  # type: ignore[attr-defined]
    return out


def test_edits_are_a_second_input_whose_columns_the_metadata_names(tmp_path: Path) -> None:
    session, _ = edited_session(tmp_path)
    inputs = session.get_inputs()  # type: ignore[attr-defined]
    assert [i.name for i in inputs] == ["z", "edits"]
    assert inputs[1].type == "tensor(float)"
    assert isinstance(inputs[1].shape[0], str) and inputs[1].shape[1] == len(EDITS), "(batch, E)"
    meta = session.get_modelmeta().custom_metadata_map  # type: ignore[attr-defined]
    assert json.loads(meta["facegan_edits"]) == EDITS  # in Directions.names order: the columns


def test_edits_all_zero_are_the_unedited_faces(tmp_path: Path) -> None:
    session, g = edited_session(tmp_path)
    z = torch.randn(4, 16, generator=torch.Generator().manual_seed(3))
    got = run(session, z, torch.zeros(4, len(EDITS)))
    np.testing.assert_allclose(got, torch_faces(g, z), atol=1e-4, rtol=0)
    # Bit for bit what the same weights exported without edits draw: amount 0 adds exactly nothing.
    import onnxruntime as ort

    plain = tmp_path / "plain"
    plain.mkdir()
    source = vivid_export(plain)  # the same weights, no edits beside them
    assert main(["export", "--checkpoint", str(source), "--out", str(plain / "g.onnx")]) == 0
    unedited = ort.InferenceSession(str(plain / "g.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(got, unedited.run(None, {"z": z.numpy()})[0])


def test_edited_faces_match_pytorch_per_row_and_sign(tmp_path: Path) -> None:
    session, g = edited_session(tmp_path)
    z = torch.randn(6, 16, generator=torch.Generator().manual_seed(4))
    amounts = torch.tensor(
        [
            [1.0, 0.0, 0.0],  # one edit at +1 ...
            [0.0, 1.0, 0.0],
            [0.0, 0.0, -1.0],  # ... or at -1: the other side's step
            [-1.0, 0.5, 0.0],
            [0.25, -0.75, 1.0],
            [0.0, 0.0, 0.0],  # a row without edits in an edited batch
        ]
    )
    got = run(session, z, amounts)
    want = torch_faces(g, z, amounts)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    unedited = torch_faces(g, z)
    moved = np.abs(want - unedited).reshape(6, -1).max(axis=1)
    assert (moved[:5] > 1e-2).all(), f"the test edits must visibly change the faces: {moved}"
    np.testing.assert_array_equal(got[5], run(session, z[5:], torch.zeros(1, len(EDITS)))[0])


def test_out_of_range_amounts_are_clamped_to_one(tmp_path: Path) -> None:
    session, g = edited_session(tmp_path)
    z = torch.randn(2, 16, generator=torch.Generator().manual_seed(6))
    got = run(session, z, torch.tensor([[5.0, -7.0, 0.5], [-float("inf"), 1e9, 0.0]]))
    clamped = torch.tensor([[1.0, -1.0, 0.5], [-1.0, 1.0, 0.0]])
    np.testing.assert_array_equal(got, run(session, z, clamped))
    np.testing.assert_allclose(got, torch_faces(g, z, clamped), atol=1e-4, rtol=0)


def test_check_onnx_compares_an_edited_batch(tmp_path: Path) -> None:
    """The export's own check runs an edited batch: a graph whose edits differ from the generator's
    (here: the generator's +1 steps doubled after export) is caught."""
    from facegan.sharing.onnx import check_onnx

    _, g = edited_session(tmp_path)
    z = torch.randn(2, 16, generator=torch.Generator().manual_seed(7))
    assert check_onnx(tmp_path / "g.onnx", g, z) <= 1e-4
    edits_of(g).steps[:, 1] *= 2
    with pytest.raises(FaceganError, match="differs from PyTorch"):
        check_onnx(tmp_path / "g.onnx", g, z)
