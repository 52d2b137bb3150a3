"""ONNX export: `facegan export --format onnx` writes one .onnx file with a dynamic batch whose output
onnxruntime computes as PyTorch does, for both architectures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from facegan.cli.main import main
from facegan.config.schema import ModelConfig
from facegan.networks.checkpoint import export_generator
from facegan.networks.factory import build_models


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
