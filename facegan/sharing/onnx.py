"""Export a generator to ONNX, to run it without PyTorch (onnxruntime, ONNX-serving runtimes, browsers).

The graph takes `z`, float32 (batch, latent_dim) drawn from N(0, I), and returns `images`, float32
(batch, 3, size, size) in [-1, 1]; the batch size is dynamic. The model's config is kept in the ONNX
metadata (`facegan_model_config`). The exported graph is the plain fp32 generator in eval mode.
Note that a seed's face is defined by PyTorch's random generator, so to reproduce facegan's seed
numbering outside PyTorch, draw z with `facegan.sampling.generate.latents` and pass it in.

Needs `pip install 'facegan[onnx]'` (onnx, onnxscript for torch's exporter, onnxruntime to check it).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from facegan.errors import FaceganError
from facegan.runtime.perf import model_config, unwrap_inference
from facegan.storage.files import atomic_write

INPUT, OUTPUT = "z", "images"
OPSET = 18


class _FlatLatent(nn.Module):
    """G with a (batch, latent_dim) input, the shape non-PyTorch callers naturally make."""

    def __init__(self, g: nn.Module) -> None:
        super().__init__()
        self.g = g

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        images: torch.Tensor = self.g(z[:, :, None, None])
        return images


def export_onnx(model: nn.Module, out: str | Path, check: bool = True) -> Path:
    """Write `model` (a facegan generator, or its inference wrapper) to the single ONNX file `out`;
    with `check`, run it in onnxruntime on a batch of 2 and compare with PyTorch's output."""
    try:
        import onnx
        import onnxscript  # noqa: F401 — torch.onnx.export's exporter needs it
    except ImportError as err:
        raise FaceganError(f"ONNX export needs the {err.name} package: pip install 'facegan[onnx]'") from None

    out = Path(out)
    if out.suffix != ".onnx":
        raise FaceganError(f"--out for --format onnx must end in .onnx, got {str(out)!r}")
    # A CPU fp32 copy: the caller's module stays on its device, in its precision and memory format.
    g = copy.deepcopy(unwrap_inference(model)).float().cpu().to(memory_format=torch.contiguous_format).eval()
    flat = _FlatLatent(g).eval()
    cfg = model_config(g)
    example = torch.randn(2, cfg.latent_dim)
    # The exporter narrates each pass on stdout; the CLI prints one line of its own instead.
    with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        program = torch.onnx.export(
            flat,
            (example,),
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
        )
    assert program is not None  # torch.onnx.export returns None only for the old exporter (dynamo=False)
    proto = program.model_proto
    onnx.helper.set_model_props(
        proto, {"facegan_model_config": json.dumps(asdict(cfg)), "producer": "facegan"}
    )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, lambda tmp: onnx.save(proto, str(tmp)))
    except OSError as err:
        raise FaceganError(f"could not write {str(out)!r}: {err.strerror or err}") from None
    if check:
        check_onnx(out, g, example)
    return out


def check_onnx(path: Path, g: nn.Module, z: torch.Tensor, atol: float = 1e-4) -> float:
    """Largest |onnxruntime - PyTorch| over `z` (batch, latent_dim); raises when above `atol`."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise FaceganError(
            "checking the ONNX export needs onnxruntime: pip install 'facegan[onnx]'"
        ) from None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run([OUTPUT], {INPUT: z.numpy()})[0])
    with torch.no_grad():
        want = _FlatLatent(g)(z).float()
    err = float((got - want).abs().max())
    if not err <= atol:
        raise FaceganError(
            f"the ONNX export of {str(path)!r} differs from PyTorch by {err:.2g} (more than "
            f"{atol:g}); please report this with your torch and onnx versions"
        )
    return err
