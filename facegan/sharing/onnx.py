"""Export a generator to ONNX, to run it without PyTorch (onnxruntime, ONNX-serving runtimes, browsers).

The graph takes `z`, float32 (batch, latent_dim) drawn from N(0, I), and returns `images`, float32
(batch, 3, size, size) in [-1, 1]; the batch size is dynamic. The model's config is kept in the ONNX
metadata (`facegan_model_config`). The exported graph is the plain fp32 generator in eval mode.

Note that a seed's face is defined by PyTorch's random generator, so to reproduce facegan's seed
numbering outside PyTorch, draw z with `facegan.sampling.generate.latents` and pass it in.

A generator with attribute edits (`g.edits`, facegan.sampling.directions) gets a second input,
`edits`, float32 (batch, E): one column per edit, in the order of the JSON list in the metadata
`facegan_edits` (`Directions.names`), one row of amounts per face. The graph computes
G(z + offset) as `Directions.apply` does: amount a of edit k moves z by `vectors[k] · a ·
steps[k, a > 0]`, and a row of zeros is the unedited face exactly. A graph cannot raise, so amounts
outside [-1, 1] are clamped to it (where facegan itself refuses them); a NaN amount gives a NaN face.
Without edits the graph has the one input `z`.

Needs `pip install 'facegan[onnx]'` (onnx, onnxscript for torch's exporter, onnxruntime to check it).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import warnings
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from facegan.errors import FaceganError
from facegan.runtime.perf import model_config, unwrap_inference
from facegan.sampling.directions import Directions
from facegan.storage.files import atomic_write

INPUT, EDITS, OUTPUT = "z", "edits", "images"
EDITS_KEY = "facegan_edits"  # ONNX metadata: the JSON list of edit names, the columns of `edits`
OPSET = 18


class _FlatLatent(nn.Module):
    """G with a (batch, latent_dim) input, the shape non-PyTorch callers naturally make."""

    def __init__(self, g: nn.Module) -> None:
        super().__init__()
        self.g = g

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        images: torch.Tensor = self.g(z[:, :, None, None])
        return images


class _EditedLatent(nn.Module):
    """G of z moved by a row of edit amounts per face, as `Directions.apply` moves it."""

    def __init__(self, g: nn.Module, directions: Directions) -> None:
        super().__init__()
        self.g = g
        self.vectors: torch.Tensor
        self.steps: torch.Tensor
        self.register_buffer("vectors", directions.vectors.detach().float().cpu().clone())  # (E, latent)
        self.register_buffer("steps", directions.steps.detach().float().cpu().clone())  # (E, 2): −1, +1

    def forward(self, z: torch.Tensor, edits: torch.Tensor) -> torch.Tensor:
        amounts = edits.clamp(-1.0, 1.0)
        # Directions.offset's step per edit: steps[k, 1] for a > 0, else steps[k, 0] (0 adds 0 either way).
        step = torch.where(amounts > 0, self.steps[:, 1], self.steps[:, 0])
        offset = (amounts * step) @ self.vectors  # (batch, latent): exactly 0 for a row of zeros
        images: torch.Tensor = self.g((z + offset)[:, :, None, None])
        return images


def _directions(g: nn.Module, latent_dim: int) -> Directions | None:
    """`g`'s edit directions, checked against its latent size; None when it has none."""
    directions: Directions | None = getattr(g, "edits", None)
    if directions is not None and directions.latent_dim != latent_dim:
        raise FaceganError(
            f"the generator's edit directions are for latent size {directions.latent_dim}, its own is "
            f"{latent_dim}; re-find them (facegan directions) or drop the edits file"
        )
    return directions


def _example_edits(directions: Directions, batch: int) -> torch.Tensor:
    """Amounts (batch, E) for the export and its check: row 0 none, then −1 … +1 spread over the edits
    (both sides' steps, and a 0 when E is odd), rolled by one more column per row."""
    spread = torch.linspace(-1.0, 1.0, len(directions.names)).clamp(-1.0, 1.0)
    rows = [torch.zeros_like(spread)] + [spread.roll(i) for i in range(batch - 1)]
    return torch.stack(rows)


def export_onnx(model: nn.Module, out: str | Path, check: bool = True) -> Path:
    """Write `model` (a facegan generator, or its inference wrapper) to the single ONNX file `out`;
    with `check`, run it in onnxruntime on a batch of 2 (with edits: unedited, then edited) and compare
    with PyTorch's output."""
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
    cfg = model_config(g)
    directions = _directions(g, cfg.latent_dim)
    example = torch.randn(2, cfg.latent_dim)
    flat: nn.Module = _FlatLatent(g) if directions is None else _EditedLatent(g, directions)
    args = (example,) if directions is None else (example, _example_edits(directions, 2))
    batch = torch.export.Dim("batch")  # one batch size for z and edits
    # The exporter narrates each pass on stdout; the CLI prints one line of its own instead. With edits
    # it also warns that the second input's "batch" axis is the first's, which is what is meant.
    with contextlib.redirect_stdout(io.StringIO()), torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", r".*axis name: batch will not be used", UserWarning)
        program = torch.onnx.export(
            flat.eval(),
            args,
            input_names=[INPUT] if directions is None else [INPUT, EDITS],
            output_names=[OUTPUT],
            dynamic_shapes=tuple({0: batch} for _ in args),
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
        )
    assert program is not None  # torch.onnx.export returns None only for the old exporter (dynamo=False)
    proto = program.model_proto
    props = {"facegan_model_config": json.dumps(asdict(cfg)), "producer": "facegan"}
    if directions is not None:
        props[EDITS_KEY] = json.dumps(directions.names)
    onnx.helper.set_model_props(proto, props)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, lambda tmp: onnx.save(proto, str(tmp)))
    except OSError as err:
        raise FaceganError(f"could not write {str(out)!r}: {err.strerror or err}") from None
    if check:
        check_onnx(out, g, example)
    return out


def check_onnx(path: Path, g: nn.Module, z: torch.Tensor, atol: float = 1e-4) -> float:
    """Largest |onnxruntime - PyTorch| over `z` (batch, latent_dim); raises when above `atol`. With
    edits (`g.edits`), over z unedited and over z edited by `_example_edits`, PyTorch's side drawn
    through `g.edits.apply` face by face."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise FaceganError(
            "checking the ONNX export needs onnxruntime: pip install 'facegan[onnx]'"
        ) from None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    directions = _directions(g, z.shape[1])
    flat = _FlatLatent(g)
    if directions is None:
        got = torch.from_numpy(session.run([OUTPUT], {INPUT: z.numpy()})[0])
        with torch.no_grad():
            want = flat(z).float()
    else:
        none, amounts = torch.zeros(len(z), len(directions.names)), _example_edits(directions, len(z))
        edited = torch.cat(
            [
                directions.apply(z[i : i + 1], dict(zip(directions.names, a.tolist(), strict=True)))
                for i, a in enumerate(amounts)
            ]
        )
        got = torch.cat(
            [
                torch.from_numpy(session.run([OUTPUT], {INPUT: z.numpy(), EDITS: a.numpy()})[0])
                for a in (none, amounts)
            ]
        )
        with torch.no_grad():
            want = torch.cat([flat(z), flat(edited)]).float()
    err = float((got - want).abs().max())
    if not err <= atol:
        raise FaceganError(
            f"the ONNX export of {str(path)!r} differs from PyTorch by {err:.2g} (more than "
            f"{atol:g}); please report this with your torch and onnx versions"
        )
    return err
