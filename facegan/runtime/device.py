"""Which device to run on: one rule for training, generating, evaluating, serving and the benchmarks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from facegan.errors import FaceganError

if TYPE_CHECKING:  # the CLI reads the defaults below without importing torch
    import torch

ALL_KINDS = ("cuda", "mps", "cpu")  # "auto" takes the first of these that this machine has
# Every verb that runs a model (train, generate, evaluate, serve) takes --device with this default and
# passes it to `pick_device`, the one decision; inference is exact fp32 by default on every device.
DEFAULT_DEVICE = "auto"
DEVICE_HELP = "auto (default: CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps"
_SPELLED = {"cpu": "cpu", "cuda": "cuda, cuda:N", "mps": "mps"}


def pick_device(name: str | torch.device, kinds: tuple[str, ...] = ALL_KINDS) -> torch.device:
    """'auto' → CUDA, then MPS, then CPU (the first available of `kinds`); otherwise the named device
    ("cpu", "cuda", "cuda:N", "mps"), checked to be one of `kinds` and to exist on this machine."""
    import torch

    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device(next(k for k in ALL_KINDS if k == "cpu" or (k in kinds and _available(k))))
    uses = ", ".join(["auto", *(_SPELLED[k] for k in ("cpu", "cuda", "mps") if k in kinds)])
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise FaceganError(f"unknown --device {name!r}; use {uses}") from None
    if dev.type not in kinds:
        raise FaceganError(f"--device {name} is not supported here; use {uses}")
    if dev.type == "cuda" and not _available("cuda"):
        raise FaceganError(f"--device {name} was asked for but no CUDA GPU is available; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise FaceganError(
            f"--device {name} was asked for but this machine has only {torch.cuda.device_count()} CUDA GPU(s)"
        )
    if dev.type == "mps" and not _available("mps"):
        raise FaceganError(f"--device {name} was asked for but MPS is not available; use --device cpu")
    return dev


def _available(kind: str) -> bool:
    import torch

    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "mps":
        return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    return kind == "cpu"
