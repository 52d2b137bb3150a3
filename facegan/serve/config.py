"""`facegan serve`'s settings: one frozen dataclass whose fields declare the command's flags.

facegan/cli/serve.py makes each field a flag and a config key through jsonargparse (as `facegan
train` does its config's), so a new server setting is one field here. The connection and cost limits are
their own dataclass, `ServeLimits` (facegan/serve/limits.py), whose fields are flags too. Nothing
here needs the web server or torch, so `facegan --help` does not import them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from facegan.config.check import check_fields, setting
from facegan.config.schema import INFERENCE_AMP_DEFAULT, InferenceAmp
from facegan.errors import FaceganError
from facegan.runtime.device import DEFAULT_DEVICE
from facegan.serve.limits import ServeLimits

# Model names appear in URLs and on the page: keep them short and plain.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
DEVICES = ("cuda", "cpu")  # what --device may name (facegan.runtime.device.pick_device's kinds)


def check_name(name: str) -> str:
    """`name` if it may name a served model, else one line saying what a name may be."""
    if not NAME_RE.fullmatch(name):
        raise FaceganError(
            f"bad model name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class ServeConfig:
    """What `facegan serve` serves, where and how (the limits hold per --workers process)."""

    checkpoint: tuple[str, ...] = setting(
        (),
        "checkpoint (.pt), run folder or exported .safetensors, named NAME (default: the file's stem "
        "or the run folder's name); repeat for several models",
        metavar="[NAME=]PATH",
    )
    pretrained: tuple[str, ...] = setting(
        (),
        "a shipped generator (celeba64, anime64); repeat for several. With neither this nor "
        "--checkpoint, every shipped one is served",
        metavar="NAME",
    )
    host: str = setting("127.0.0.1", "address to bind; the default is loopback only")
    port: int = setting(8000, "port; 0 picks a free one")
    device: str = setting(DEFAULT_DEVICE, "auto, cpu or cuda")
    amp: InferenceAmp = setting(
        INFERENCE_AMP_DEFAULT,
        "inference precision: off (default: exact fp32, the same "
        "pixels as generate and the Python API), auto (bf16 + channels_last on CUDA and on "
        "CPUs with native bf16, fp32 elsewhere), bf16",
    )
    workers: int = setting(1, "server processes sharing the port, each loading the generators", metavar="N")
    # Not a flag itself: each of its fields is one (facegan/cli/main.py adds them as their own group).
    limits: ServeLimits = field(default_factory=ServeLimits, metadata={"flag": False})

    def __post_init__(self) -> None:
        check_fields(self)
        if not 0 <= self.port <= 65535:
            raise FaceganError(f"--port must be between 0 and 65535, got {self.port}")
        if self.workers < 1:
            raise FaceganError(f"--workers must be at least 1, got {self.workers}")

    def sources(self) -> dict[str, str]:
        """name → path of every model to serve, the default (first) one first: each --pretrained, then
        each --checkpoint; every shipped generator, celeba64 first, when neither is given. Names are
        checked and unique."""
        from facegan.sharing import pretrained

        names = self.pretrained or (() if self.checkpoint else tuple(pretrained.serve_order()))
        found = {name: str(pretrained.path(name)) for name in names}
        for spec in self.checkpoint:
            name, path = _named_path(spec)
            if name in found:
                raise FaceganError(f"two models are named {name!r}; name them with --checkpoint NAME=PATH")
            found[name] = path
        if not found:
            raise FaceganError("facegan serve needs a model: --checkpoint [NAME=]PATH (.pt or .safetensors)")
        for name in found:
            check_name(name)
        return found


def _named_path(spec: str) -> tuple[str, str]:
    """`[NAME=]PATH` → (name, path); without a valid NAME= the whole spec is the path and the name is
    its stem, or the run folder's name for a run folder or a file in its checkpoints/."""
    name, sep, path = spec.partition("=")
    if sep and NAME_RE.fullmatch(name):
        return name, path
    p = Path(spec)
    name = p.name if p.is_dir() else p.stem
    if p.name == "latest.pt" or p.parent.name == "checkpoints":
        name = p.parent.parent.name
    return name, spec
