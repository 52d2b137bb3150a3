"""facegan's Python API: load a generator, make faces, walk between them, export, train.

    import facegan

    g = facegan.load("celeba64")             # shipped name, file, run folder, Hub folder or "hf:owner/name"
    faces = g.generate(seeds=range(8), truncation=1.5)     # list of PIL images
    smiling = g.generate(seeds=range(8), edit={"Smiling": 1.0, "Young": -0.5})  # attribute edits
    walk = g.interpolate(seeds=[3, 17], frames=12)         # the frames of a latent walk
    result = facegan.train(preset="tiny", steps=200)       # a run folder, like `facegan train`

Everything here is stable: names and arguments change only with a deprecation period. A seed always
names the same face (z is drawn from that seed on the CPU, G runs in eval mode) at a given precision,
exactly as `facegan generate` and the server draw it.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image
from torch import nn

from facegan.config.schema import INFERENCE_AMP_DEFAULT, ModelConfig, RunConfig
from facegan.errors import FaceganError
from facegan.runtime.device import DEFAULT_DEVICE
from facegan.runtime.perf import model_config, unwrap_inference
from facegan.sampling.generate import MAX_FACES, MAX_SEED, faces, grid, interpolation, load_generator, to_pil
from facegan.sharing.names import is_hub_id, not_found

Output = Literal["pil", "tensor", "grid"]


def unwrap(module: nn.Module) -> nn.Module:
    """The plain generator inside a `Generator` and an inference wrapper (its weights are what gets
    exported)."""
    return unwrap_inference(module.model if isinstance(module, Generator) else module)


class Generator(nn.Module):
    """A loaded facegan generator, ready to use (eval mode).

    Call it like the network, `g(z)` with z of shape (batch, latent_dim) → images in [-1, 1], or use
    `generate` and `interpolate` for seeded faces as PIL images. `g.model` is the underlying module.
    """

    def __init__(self, model: nn.Module, source: str | None = None) -> None:
        super().__init__()
        self.model = model
        self.source = source  # what it was loaded from: a shipped name, a path or a repo id
        self.eval()  # BatchNorm's running statistics: a seed names one face in any batch

    @property
    def config(self) -> ModelConfig:
        """The architecture: size, latent_dim, ngf, ndf, channels, arch."""
        return model_config(unwrap(self.model))

    @property
    def edits(self) -> list[str]:
        """Names of the attribute edits this generator has (`generate(edit=...)`); [] when none."""
        directions = getattr(self.model, "edits", None)
        return list(directions.names) if directions is not None else []

    @property
    def display_truncation(self) -> float | None:
        """The variety (truncation) the page and the HTTP API show this model at by default, measured for
        it and stored with it (None: the full distribution). `generate` does not use it: pass
        `truncation=g.display_truncation` for the page's faces. Set it before `export` to store one."""
        return getattr(self.model, "display_truncation", None)

    @display_truncation.setter
    def display_truncation(self, value: float | None) -> None:
        from facegan.sampling.display import display_value

        t = display_value(value, "display_truncation")
        # Both the loaded module and the plain network under it, so an export of either stores it.
        setattr(self.model, "display_truncation", t)  # noqa: B010  (nn.Module types attributes as Tensor | Module)
        setattr(unwrap(self.model), "display_truncation", t)  # noqa: B010

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def size(self) -> int:
        return self.config.size

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1], (batch, 3, size, size), for latents z (batch, latent_dim[, 1, 1])."""
        if z.dim() == 2:
            z = z[:, :, None, None]
        images: torch.Tensor = self.model(z)
        return images

    def generate(
        self,
        seeds: int | Iterable[int] | None = None,
        *,
        n: int | None = None,
        truncation: float | None = None,
        output: Output = "pil",
        batch_size: int = 256,
        edit: dict[str, float] | None = None,
    ) -> list[Image.Image] | torch.Tensor | Image.Image:
        """Faces for `seeds`: a list of seeds, or a first seed with `n` (faces seed..seed+n-1; seeds 0..n-1
        when only `n` is given). `truncation` t redraws latent components beyond ±t (fewer broken faces,
        less variety; None = the full distribution, as `facegan generate`; the page uses the model's
        `display_truncation`).
        `output`: "pil" (a list of RGB images), "tensor" ((N, 3, S, S) in [-1, 1]) or "grid" (one image).
        `edit` moves every face along named attribute edits ({"Smiling": 1.0}; amounts from -1 to 1, see
        `g.edits`); an amount of 0 is the unedited face, bit for bit."""
        picked = _seed_list(seeds, n)
        if output not in ("pil", "tensor", "grid"):  # checked before the work, not after
            raise FaceganError(f"output must be 'pil', 'tensor' or 'grid', got {output!r}")
        if batch_size < 1:
            raise FaceganError(f"batch_size must be >= 1, got {batch_size}")
        if edit:
            from facegan.sampling.render import edit_faces

            images = edit_faces(
                self.model,
                getattr(self.model, "edits", None),
                picked,
                _edit_dict(edit),
                truncation,
                batch_size,
            )
        else:
            # generate.faces' `g` is typed networks.dcgan.Generator, yet any generator module works.
            images = faces(self.model, picked, batch_size=batch_size, truncation=truncation)
        return _as(images, output)

    def interpolate(
        self,
        seeds: Iterable[int],
        frames: int = 24,
        *,
        truncation: float | None = None,
        output: Output = "pil",
    ) -> list[Image.Image] | torch.Tensor | Image.Image:
        """A latent walk (slerp) through `seeds` in order, `frames` per leg; the first and last frames
        are the seeds' own faces. Save one as a GIF with PIL:
        `walk[0].save("walk.gif", save_all=True, append_images=walk[1:], duration=40, loop=0)`."""
        walk = interpolation(self.model, [_seed(s) for s in seeds], frames, truncation)
        return _as(walk, output)

    def export(self, out: str | Path, format: Literal["safetensors", "hub", "onnx"] | None = None) -> Path:
        """Write the generator to `out`: a .safetensors file (weights + config), a .onnx file (needs
        `facegan[onnx]`), or a Hub-layout folder (`format="hub"`, needs `facegan[hub]`) whose model
        card describes what it was loaded from (a shipped model's own card, or the training run)."""
        return export(self.model, out, format, source=self.source)

    def save_pretrained(
        self, folder: str | Path, *, push_to_hub: bool = False, repo_id: str | None = None
    ) -> Path:
        """The Hub layout (config.json, model.safetensors, README.md) in `folder`; with `push_to_hub`,
        also uploaded to `repo_id` (needs `facegan[hub]` and `huggingface-cli login`)."""
        hub = _hub()
        card, samples = hub.card_for(self.source, self.model)
        path: Path = hub.save_pretrained(
            self.model, folder, card, samples, repo_id=repo_id, push_to_hub=push_to_hub
        )
        return path

    @classmethod
    def from_pretrained(
        cls,
        repo_or_folder: str | Path,
        *,
        device: str = DEFAULT_DEVICE,
        amp: str = INFERENCE_AMP_DEFAULT,
        revision: str | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
    ) -> Generator:
        """Load a Hub repo ("hf:owner/name", downloaded into the Hub cache) or a local Hub-layout folder
        through huggingface_hub (needs `facegan[hub]`). A bare "owner/name" is a local path only."""
        model = _hub().from_pretrained(
            repo_or_folder,
            device=device,
            amp=amp,
            revision=revision,
            token=token,
            local_files_only=local_files_only,
        )
        return cls(model, str(repo_or_folder))


def load(
    source: str | Path,
    *,
    device: str = DEFAULT_DEVICE,
    amp: str = INFERENCE_AMP_DEFAULT,
    revision: str | None = None,
) -> Generator:
    """A ready generator from a shipped name ("celeba64", "anime64"), a checkpoint (.pt), a run folder,
    an exported .safetensors, a Hub-layout folder, or a Hugging Face Hub repo named explicitly as
    "hf:owner/name".

    Anything else is a local path and only that: "runs/typo" that does not exist is an error, never a
    Hub lookup (a squatted repository of that name could answer). `amp` "off" (default, as the CLI,
    torch.hub and the page) is exact fp32; "auto" uses the device's fast inference path (bf16 on CPUs
    with native bf16 and on CUDA). `revision` picks a Hub revision."""
    from facegan.sharing import pretrained

    text = str(source)
    if not text.strip():  # Path("") is the current folder, which would report a missing latest.pt
        raise FaceganError(
            "no generator given: name a shipped one (celeba64, anime64), a file, a run "
            "folder or a Hub repo as hf:owner/name"
        )
    if is_hub_id(text):
        return Generator.from_pretrained(text, device=device, amp=amp, revision=revision)
    if text in pretrained.available():
        return Generator(load_generator(pretrained.path(text), device, amp), text)
    if os.path.lexists(text):
        return Generator(load_generator(text, device, amp), text)
    raise FaceganError(not_found(text))


def export(
    model: nn.Module,
    out: str | Path,
    format: str | None = None,
    *,
    source: str | None = None,
    license: str | None = None,
    datasets: list[str] | None = None,
    half: bool = False,
) -> Path:
    """Export `model` to `out` as `format` (safetensors | hub | onnx); without a format, .onnx means
    onnx and anything else safetensors. For the Hub layout, `source` (a shipped name, or the run
    folder / checkpoint / file it came from) fills the model card; `license` (a Hub licence id) and
    `datasets` (Hub dataset ids) go into its metadata. `half` stores the safetensors weights (plain or
    Hub) as float16: half the file, the same faces to within float16 rounding."""
    from facegan.networks.checkpoint import export_generator

    out = Path(out)
    format = format or ("onnx" if out.suffix == ".onnx" else "safetensors")
    g = unwrap(model)
    if format == "safetensors":
        path = export_generator(g, model_config(g), out, half=half)
        _export_edits(g, path)
        return path
    if format == "onnx":
        if half:
            raise FaceganError("--half applies to safetensors and hub exports; ONNX stays float32")
        from facegan.sharing.onnx import export_onnx

        return export_onnx(g, out)
    if format == "hub":
        hub = _hub()
        card, samples = hub.card_for(source, g, license, datasets)
        folder: Path = hub.save_pretrained(g, out, card=card, samples=samples, half=half)
        return folder
    raise FaceganError(f"unknown export format {format!r}; use safetensors, hub or onnx")


def train(
    config: RunConfig | str | Path | None = None,
    *,
    preset: str | None = None,
    outdir: str | Path = "runs",
    resume: str | Path | None = None,
    quiet: bool = False,
    **settings: Any,
) -> Any:
    """Train as `facegan train` does; returns the result (`.run_dir`, `.step`, `.interrupted`).

    `config`: a RunConfig, or a YAML config file (the layout `facegan train --print-config` prints).
    `settings`: any config field by name, like the flags (`steps=500`, `data="data/celeba64"`,
    `tracker="tensorboard,mlflow"`); they layer as defaults < preset < config < settings.
    `resume`: "auto" or a run folder / checkpoint to continue (then `settings` may change only what
    `--resume` allows: length, device, intervals)."""
    from facegan.config.files import load_config_file, resolve_config, resumable_fields, with_overrides
    from facegan.training.loop import train as run

    if resume is not None:
        return run(
            # loop.train types its config as RunConfig; on a resume it reads the run's from the checkpoint.
            None,  # type: ignore[arg-type]
            Path(outdir),
            resume=str(resume),
            overrides_on_resume=settings,
            quiet=quiet,
            resumable=resumable_fields(),
        )
    if isinstance(config, RunConfig):
        if preset is not None:
            raise FaceganError("pass either a RunConfig or a preset, not both")
        cfg = with_overrides(config, settings)
    else:
        cfg = resolve_config(preset, load_config_file(config) if config is not None else {}, settings)
    return run(cfg, Path(outdir), quiet=quiet)


def _export_edits(g: nn.Module, weights: Path) -> None:
    """Write `g`'s edit directions beside its exported weights (`X.edits.safetensors`), so they load
    with it; an older sidecar of a model without edits is removed rather than left to mislead."""
    from facegan.sampling.directions import sidecar

    directions, side = getattr(g, "edits", None), sidecar(weights)
    if directions is not None:
        directions.save(side)
    else:
        side.unlink(missing_ok=True)


def _hub() -> Any:
    """facegan.sharing.hub, or one line saying which extra it needs."""
    try:
        from facegan.sharing import hub
    except ImportError as err:
        raise FaceganError(
            f"the Hugging Face Hub layout needs {err.name or 'huggingface_hub'}: pip install 'facegan[hub]'"
        ) from None
    return hub


def _seed_list(seeds: int | Iterable[int] | None, n: int | None) -> list[int]:
    if n is not None and not 1 <= n <= MAX_FACES:
        raise FaceganError(f"n must be between 1 and {MAX_FACES:,}, got {n}")
    if seeds is None or isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):
        first = _seed(seeds or 0)
        picked = list(range(first, first + (n or 1)))
    else:
        if n is not None:
            raise FaceganError("give n with a first seed (seeds=7, n=4), not with a list of seeds")
        picked = [_seed(s) for s in seeds]
    if not picked or len(picked) > MAX_FACES:
        raise FaceganError(f"generate makes 1 to {MAX_FACES:,} faces per call, got {len(picked):,}")
    if min(picked) < 0 or max(picked) > MAX_SEED:
        raise FaceganError(f"seeds must be between 0 and {MAX_SEED}")
    return picked


def _edit_dict(edit: object) -> dict[str, float]:
    """`edit` as {name: amount} (names and amounts are checked against the model's directions)."""
    if not isinstance(edit, dict):
        raise FaceganError(f"edit must be a dict like {{'Smiling': 1.0}}, got {type(edit).__name__}")
    return edit


def _seed(value: object) -> int:
    """An integer seed (numpy integers too); 1.5 or "7" is refused rather than silently rounded."""
    if isinstance(value, bool):
        raise FaceganError(f"seeds must be integers, got {value!r}")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise FaceganError(f"seeds must be integers, got {value!r}") from None


def _as(images: torch.Tensor, output: str) -> list[Image.Image] | torch.Tensor | Image.Image:
    if output == "tensor":
        return images
    if output == "grid":
        return Image.fromarray(
            grid(images, nrow=max(1, round(len(images) ** 0.5)))
            .mul(255)
            .add(0.5)
            .clamp(0, 255)
            .to(torch.uint8)
            .permute(1, 2, 0)
            .numpy(),
            "RGB",
        )
    if output == "pil":
        return [to_pil(img) for img in images]
    raise FaceganError(f"output must be 'pil', 'tensor' or 'grid', got {output!r}")
