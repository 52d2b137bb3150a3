"""Named edit directions of one generator: how an amount in [-1, 1] moves a face's latent, and the file
that ships them (`<model>.edits.safetensors` beside `<model>.safetensors`).

An edit adds `amount · step · d` to z, where d is the edit's unit direction in z space and `step` its
calibrated length on that side (±1 = "clearly without / clearly with", see facegan.edits.calibrate).
Directions live in z (not an intermediate layer) so an edited face is still G(z′) with the same forward
pass, batch shape and precision as an unedited one: amount 0 leaves z untouched, so the face is
bit-identical to the seed's, alone or in a batch, in the CLI, the API and the server.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from facegan.errors import FaceganError

FORMAT = "facegan-edit-directions"
SUFFIX = ".edits.safetensors"
# Names people type in URLs and shells: letters, digits, _ and -, as CelebA's attribute names are.
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,39}$")
MAX_EDITS = 64


@dataclass
class Directions:
    """`names[k]` moves z along unit `vectors[k]` (latent_dim,), by `steps[k, 0]` toward −1 and
    `steps[k, 1]` toward +1. `info` records how they were found (method, data, calibration)."""

    names: list[str]
    vectors: torch.Tensor  # (K, latent_dim) float32, unit rows
    steps: torch.Tensor  # (K, 2) float32 ≥ 0: z distance at amount −1 and at +1
    info: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        k = len(self.names)
        if not 1 <= k <= MAX_EDITS or len(set(self.names)) != k:
            raise FaceganError(f"edit directions need 1 to {MAX_EDITS} distinct names, got {self.names!r}")
        bad = [n for n in self.names if not NAME.match(n)]
        if bad:
            raise FaceganError(f"edit names must be letters, digits, _ or - (got {bad[0]!r})")
        if self.vectors.dim() != 2 or len(self.vectors) != k or tuple(self.steps.shape) != (k, 2):
            raise FaceganError(
                f"edit directions: {k} names need vectors (K, latent) and steps (K, 2), got "
                f"{tuple(self.vectors.shape)} and {tuple(self.steps.shape)}"
            )
        if not (
            torch.isfinite(self.vectors).all()
            and torch.isfinite(self.steps).all()
            and (self.steps >= 0).all()
        ):
            raise FaceganError("edit directions hold non-finite vectors or negative steps")
        self.vectors = self.vectors.float()
        self.steps = self.steps.float()

    @property
    def latent_dim(self) -> int:
        return self.vectors.shape[1]

    def choices(self) -> str:
        return ", ".join(self.names)

    def check(self, edits: dict[str, float]) -> dict[str, float]:
        """`edits` validated (known names, finite amounts in [-1, 1]); FaceganError naming the choices."""
        out: dict[str, float] = {}
        for name, amount in edits.items():
            if name not in self.names:
                raise FaceganError(f"unknown edit {name!r}; this model's edits: {self.choices()}")
            if isinstance(amount, bool) or not isinstance(amount, numbers.Real):  # numpy floats too
                raise FaceganError(f"edit {name}: the amount must be a number from -1 to 1, got {amount!r}")
            value = float(amount)
            if not (math.isfinite(value) and -1.0 <= value <= 1.0):
                raise FaceganError(
                    f"edit {name}: the amount must be from -1 to 1, got {amount!r} (edits: {self.choices()})"
                )
            out[name] = value
        return out

    def offset(self, edits: dict[str, float]) -> torch.Tensor | None:
        """The z offset (latent_dim,) of `edits`; None when every amount is 0 (nothing to add)."""
        edits = self.check(edits)
        total = None
        for name, amount in edits.items():
            if amount == 0.0:
                continue
            k = self.names.index(name)
            step = self.steps[k, int(amount > 0)]
            part = self.vectors[k] * (amount * step)
            total = part if total is None else total + part
        return total

    def apply(self, z: torch.Tensor, edits: dict[str, float] | None) -> torch.Tensor:
        """Edited latents (same shape as z, (N, latent_dim[, 1, 1])); z itself when nothing moves."""
        if not edits:
            return z
        if z.shape[1] != self.latent_dim:
            raise FaceganError(
                f"these edit directions are for latent size {self.latent_dim}, the "
                f"generator's is {z.shape[1]}"
            )
        off = self.offset(edits)
        if off is None:
            return z
        return z + off.to(z).reshape(1, -1, *([1] * (z.dim() - 2)))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "names": json.dumps(self.names), "info": json.dumps(self.info)}
        save_file(
            {"vectors": self.vectors.contiguous(), "steps": self.steps.contiguous()}, str(path), metadata=meta
        )
        return path


def load_directions(path: str | Path) -> Directions:
    """Directions from `Directions.save`'s file; one-line FaceganError when it is not one."""
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise ValueError(f"its metadata does not say format={FORMAT}")
            if set(f.keys()) != {"vectors", "steps"}:
                raise ValueError("it must hold exactly the tensors 'vectors' and 'steps'")
            vectors, steps = f.get_tensor("vectors"), f.get_tensor("steps")
        names = json.loads(meta["names"])
        info = json.loads(meta.get("info", "{}"))
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError("its names are not a list of strings")
    except (SafetensorError, OSError, ValueError, KeyError, RuntimeError) as err:
        raise FaceganError(f"could not read edit directions {str(path)!r}: {err}") from None
    return Directions(names, vectors, steps, info if isinstance(info, dict) else {})


def sidecar(model_path: str | Path) -> Path:
    """Where a generator's directions live: `X.edits.safetensors` beside `X.safetensors` (or a .pt),
    `edits.safetensors` inside a Hub-layout folder."""
    path = Path(model_path)
    if path.is_dir():
        return path / "edits.safetensors"
    if path.name == "model.safetensors":  # a Hub-layout folder's weights
        return path.with_name("edits.safetensors")
    return path.with_name(path.name.removesuffix(path.suffix) + SUFFIX)


def find_directions(model_path: str | Path) -> Directions | None:
    """The directions shipped beside a generator file, or None when it has none."""
    side = sidecar(model_path)
    return load_directions(side) if side.is_file() else None


def parse_edits(specs: list[str] | str | None, directions: Directions | None) -> dict[str, float]:
    """`["Smiling=1", "Young=-0.5"]` (CLI) or `"Smiling:1,Eyeglasses:0.5"` (URL) → {name: amount},
    checked against `directions`. Either separator works in either form; a name given twice is refused.
    FaceganError (one line naming the valid choices) for anything wrong, also when there are no
    directions at all."""
    if not specs:
        return {}
    parts = [p.strip() for spec in ([specs] if isinstance(specs, str) else specs) for p in spec.split(",")]
    if directions is None:
        raise FaceganError(
            "this model has no edit directions (no edits file beside its weights); "
            "find some with `facegan directions`"
        )
    edits: dict[str, float] = {}
    for part in parts:
        name, sep, value = part.replace(":", "=", 1).partition("=")
        name = name.strip()
        try:
            if not sep:
                raise ValueError
            amount = float(value)
        except ValueError:
            raise FaceganError(
                f"bad edit {part!r}: use NAME=AMOUNT (or NAME:AMOUNT) with AMOUNT from -1 to "
                f"1; this model's edits: {directions.choices()}"
            ) from None
        if name in edits:
            raise FaceganError(f"edit {name!r} is given twice")
        edits[name] = amount
    return directions.check(edits)
