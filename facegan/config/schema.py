"""Typed, frozen configuration: one object flows from the CLI into the run folder and every checkpoint.

The defaults are the seed write-ups' DCGAN (Radford et al. as used by the PyTorch example): 64×64 RGB,
latent 100, ngf = ndf = 64, Adam(2e-4, β=(0.5, 0.999)), batch 128, BCE with real=1 / fake=0.

Every setting is declared here once, with `setting(...)` (facegan/config/check.py): its type (a
`Literal` for a choice), default, help text and whether a resume may change it. `facegan train`'s
flags, config files, presets (facegan/presets/*.yaml) and the resume check are all derived from these
fields by jsonargparse (facegan/config/files.py, docs/config.md).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Literal, cast

from facegan.config.check import check_fields, setting
from facegan.config.gan import D_NORMS as D_NORMS
from facegan.config.gan import DIFFAUG_OPS as DIFFAUG_OPS
from facegan.config.gan import GANConfig, none_is_empty
from facegan.errors import FaceganError
from facegan.storage.sizes import check_model_size

SIZES = (32, 64, 128, 256)
# The choice lists, each defined once as a Literal type: jsonargparse checks a flag's or a file's value
# against it, `check_fields` a built dataclass's, and the tuples below are the same lists for help texts.
GUpsample = Literal["convt", "resize"]
AmpMode = Literal["auto", "off", "bf16", "fp16"]
# Inference (generate, evaluate, the Python API, torch.hub, the page) runs in exact fp32 unless asked:
# one default everywhere, so the same seed gives the same pixels through every surface.
InferenceAmp = Literal["auto", "off", "bf16"]
AutoOnOff = Literal["auto", "on", "off"]
CompileMode = Literal["off", "default", "max-autotune", "reduce-overhead"]
NanPolicy = Literal["rollback-skip", "rollback-lower-lr", "stop"]
G_UPSAMPLES: tuple[str, ...] = typing.get_args(GUpsample)
AMP_MODES: tuple[str, ...] = typing.get_args(AmpMode)
INFERENCE_AMP: tuple[str, ...] = typing.get_args(InferenceAmp)
INFERENCE_AMP_DEFAULT = "off"
AUTO_ON_OFF: tuple[str, ...] = typing.get_args(AutoOnOff)
COMPILE_MODES: tuple[str, ...] = typing.get_args(CompileMode)
NAN_POLICIES: tuple[str, ...] = typing.get_args(NanPolicy)
# Version of the config layout in checkpoints and config files; bump it (and add a migration in
# facegan/config/files.py) whenever a field is added, removed, renamed or changes its default.
CONFIG_SCHEMA = 2


# The widest network facegan builds: a config read from a file (a checkpoint, an export, a YAML) is
# untrusted, and `ngf: 1000000` would otherwise try to allocate terabytes before any other check. 1024 is
# a model that trains (at 32 px with a narrower D); whether a whole config fits is checked by
# `sizes.check_model_size`, from the config alone.
MAX_WIDTH = 1024
MAX_LATENT = 4096


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of G and D; depth follows `size` (one stage per doubling above 4×4).

    arch: "dcgan" (the seeds' transposed-conv G and strided-conv D with BatchNorm) or "r3gan" (residual
    G and D without normalisation, R3GAN-style; `facegan/r3gan.py`). ngf/ndf set the widths of both.
    """

    size: int = setting(64, "image size: 32, 64, 128 or 256 (one network stage per doubling)")
    latent_dim: int = setting(100, "length of z", max=MAX_LATENT)
    ngf: int = setting(64, "generator width", max=MAX_WIDTH)
    ndf: int = setting(64, "discriminator width", max=MAX_WIDTH)
    # Not a flag: every dataset facegan prepares is RGB.
    channels: int = setting(3, "image channels", flag=False, max=4)
    # A name in the architecture registry (facegan/networks/registry.py), checked where it is looked up
    # (before a run writes anything); `facegan train --help` lists the registered ones.
    arch: str = setting("dcgan", "network architecture: dcgan is the seeds' networks")
    # No schema bump: a file written before it has the seeds' transposed convs, which the default keeps.
    g_upsample: GUpsample = setting(
        "convt",
        "how the dcgan G doubles its resolution: convt (the seeds' 4×4 "
        "stride-2 transposed conv) or resize (nearest ×2, then a 3×3 conv: no "
        "checkerboard artifacts, Odena et al. 2016)",
    )

    def __post_init__(self) -> None:
        check_fields(self)
        check_size(self.size)
        if self.arch == "r3gan" and self.g_upsample != "convt":
            raise FaceganError("--g-upsample applies to the dcgan generator only, not --arch r3gan")
        for name in ("latent_dim", "ngf", "ndf", "channels"):
            if getattr(self, name) < 1:
                raise FaceganError(f"{name} must be a positive integer, got {getattr(self, name)}")
        try:  # before anything is built: a size the machine cannot hold is one line, not an allocator crash
            check_model_size(self.size, self.latent_dim, self.ngf, self.ndf, self.channels)
        except ValueError as err:
            raise FaceganError(str(err)) from None


@dataclass(frozen=True)
class OptimConfig:
    """Adam for both networks, as in the DCGAN paper."""

    lr_g: float = setting(2e-4, "generator learning rate")
    lr_d: float = setting(2e-4, "discriminator learning rate")
    beta1: float = setting(0.5, "Adam beta1")
    beta2: float = setting(0.999, "Adam beta2")
    # No schema bump: a run written before it had constant learning rates, which the default keeps.
    # Resumable like --steps, which it follows: both shape the steps still to come, never those done, so
    # a finished run can be extended with a ramp-down (the LR is a function of the step: resume is exact).
    lr_rampdown: int = setting(
        0,
        "steps at the end of the run over which both learning rates fall "
        "linearly toward 0, as SNGAN trains (Miyato et al. 2018); 0 = constant",
        resumable=True,
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if self.lr_rampdown < 0:
            raise FaceganError(f"--lr-rampdown must be >= 0, got {self.lr_rampdown}")
        for name in ("lr_g", "lr_d"):
            if getattr(self, name) <= 0:
                raise FaceganError(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        for name in ("beta1", "beta2"):  # Adam's own check would end in a ValueError traceback
            if not 0 <= getattr(self, name) < 1:
                raise FaceganError(f"--{name} must be in [0, 1), got {getattr(self, name)}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything about one training run except the architecture and optimizer."""

    data: str = setting("synthetic", "prepared dataset folder, image folder, .zip, or 'synthetic'")
    batch_size: int = setting(128, "images per step")
    epochs: int = setting(5, "passes over the data", resumable=True)
    steps: int | None = setting(None, "total training steps; overrides --epochs", resumable=True)
    seed: int = setting(0, "run seed: init, data order, noise")
    device: str = setting("auto", "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps", resumable=True)
    # The seeds do not flip; a common, label-free augmentation for faces.
    hflip: bool = setting(False, "random horizontal flips")
    # No schema bump: data prepared before held-out splits has none, so old runs train on the same images.
    train_on_heldout: bool = setting(
        False,
        "also train on the dataset's held-out split (metrics then "
        "measure against images the generator has seen)",
    )
    log_every: int = setting(10, "steps between stats records", resumable=True)
    sample_every: int = setting(200, "steps between sample grids", resumable=True)
    ckpt_every: int = setting(500, "steps between checkpoints", resumable=True)
    keep_ckpts: int = setting(3, "numbered checkpoints to keep", resumable=True)
    num_samples: int = setting(64, "images in the fixed-noise grid")
    synthetic_count: int = setting(8192, "images in the synthetic set (--data synthetic)")
    eval_every: int = setting(
        0, "steps between quality measurements; 0 = never", resumable=True, group="eval"
    )
    eval_metrics: str = setting(
        "c2st",
        "comma list of metric protocols; the first picks best.pt, e.g. fid10k",
        resumable=True,
        group="eval",
    )
    eval_num_fake: int = setting(
        0, "generated images per evaluation; 0 = the protocol's own count", resumable=True, group="eval"
    )
    inception_weights: str | None = setting(
        None, "local pt_inception-2015-12-05-6726825d.pth for fid/kid", resumable=True, group="eval"
    )
    # No schema bump for these two: they only act once a run diverges, and a run written before they
    # existed gets the guard's defaults, which change nothing about a healthy run.
    on_nan: NanPolicy = setting(
        "rollback-skip",
        "when a loss or weight turns NaN/inf: roll back to the last good "
        "checkpoint and skip the batches since the last finite check (rollback-skip), "
        "or halve both learning rates (rollback-lower-lr), or stop (stop)",
        resumable=True,
    )
    nan_retries: int = setting(
        3, "rollbacks a diverging run may make before it gives up", resumable=True, max=1000
    )
    # No schema bump: runs written before it trained in one process, where the default (per-rank
    # statistics) is the same thing. Resumable like the number of ranks, which it only qualifies: both
    # change how BatchNorm groups a step's images into statistics, never which images or noise are used.
    sync_bn: bool = setting(
        False,
        "torchrun: BatchNorm statistics over the whole global batch "
        "(torch.nn.SyncBatchNorm, CUDA only) instead of each rank's B/N images",
        resumable=True,
    )
    # No schema bump: a run written before trackers existed logged to TensorBoard, which the default keeps.
    tracker: str = setting(
        "tensorboard",
        "experiment trackers, a comma list of registered trackers, or none (stats.jsonl is always written)",
        resumable=True,
        parse=none_is_empty,
    )

    def __post_init__(self) -> None:
        check_fields(self)
        for name in (
            "batch_size",
            "epochs",
            "log_every",
            "sample_every",
            "ckpt_every",
            "keep_ckpts",
            "num_samples",
            "synthetic_count",
        ):
            if getattr(self, name) < 1:
                raise FaceganError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.nan_retries < 0:
            raise FaceganError(f"--nan-retries must be >= 0, got {self.nan_retries}")
        if self.eval_every < 0 or self.eval_num_fake < 0:
            raise FaceganError("--eval-every and --eval-num-fake must be >= 0")
        if self.steps is not None and self.steps < 1:
            raise FaceganError(f"--steps must be >= 1, got {self.steps}")
        # The names are looked up in the tracker registry (facegan/tracking/trackers.py) before a run starts.
        if len(set(self.trackers)) != len(self.trackers):
            raise FaceganError(
                f"--tracker must be a comma list of distinct trackers (or none), got {self.tracker!r}"
            )

    def total_steps(self, steps_per_epoch: int) -> int:
        """The run's length in steps, THE unit of training length (every schedule is in steps too):
        --steps when given, else --epochs converted here, the one place that converts them."""
        return self.steps if self.steps is not None else self.epochs * steps_per_epoch

    @property
    def trackers(self) -> tuple[str, ...]:
        """The trackers to log to, e.g. ("tensorboard", "mlflow"); () for "none"."""
        return tuple(n.strip() for n in none_is_empty(self.tracker.strip()).split(",") if n.strip())


@dataclass(frozen=True)
class PerfConfig:
    """Speed settings. They change how a step is computed, never what it computes (up to rounding).

    "auto" picks per device: on CUDA bf16 autocast, channels_last, fused Adam and a device-resident
    dataset; on CPU channels_last and fused Adam reading the memory-mapped dataset, with bf16 autocast
    where the processor has native bf16 (AVX512-BF16 or AMX) and fp32 elsewhere; on MPS the plain fp32
    path. A run's config.json records the resolved values, never "auto".
    """

    amp: AmpMode = setting(
        "auto",
        "autocast dtype (auto: bf16 on CUDA and on CPUs with native bf16, i.e. "
        "AVX512-BF16 or AMX; fp32 elsewhere); off = exact fp32; fp16 uses a GradScaler",
        resumable=True,
    )
    channels_last: AutoOnOff = setting("auto", "NHWC memory format", resumable=True)
    compile: CompileMode = setting(
        "off",
        "torch.compile G and D (reduce-overhead adds CUDA graphs)",
        resumable=True,
    )
    fused_adam: AutoOnOff = setting("auto", "fused Adam kernel (off = foreach)", resumable=True)
    resident: AutoOnOff = setting(
        "auto",
        "copy the uint8 dataset to the device once (auto: on for GPUs)",
        resumable=True,
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class RunConfig:
    """The complete, resolved configuration of a run; written to `config.json` and every checkpoint."""

    preset: str = "dcgan"
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    perf: PerfConfig = field(default_factory=PerfConfig)
    gan: GANConfig = field(default_factory=GANConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        """Rebuild from `to_dict` output; unknown keys are an error so typos never pass silently.

        Sections missing from `raw` (e.g. a checkpoint written before a section existed) get defaults.
        """
        unknown = set(raw) - {f.name for f in fields(cls)}
        if unknown:
            raise FaceganError(f"unknown config sections: {', '.join(sorted(unknown))}")
        try:
            sections = {name: _build(kind, raw.get(name, {})) for name, kind in section_types().items()}
            return cls(preset=raw.get("preset", "dcgan"), **sections)
        except (TypeError, AttributeError) as err:
            raise FaceganError(f"invalid facegan config: {err}") from None

    def replace(self, **sections: Any) -> RunConfig:
        """Copy with whole sections or `preset` swapped."""
        return dataclasses.replace(self, **sections)


def section_types() -> dict[str, type]:
    """The dataclass sections of RunConfig by name (model, optim, train, ...)."""
    # Every section field has a default_factory that is its dataclass.
    return {f.name: cast(type, f.default_factory) for f in fields(RunConfig) if f.name != "preset"}


def _build(kind: type, raw: dict[str, Any]) -> Any:
    known = {f.name for f in fields(kind)}
    unknown = set(raw) - known
    if unknown:
        raise FaceganError(f"unknown {kind.__name__} keys: {', '.join(sorted(unknown))}")
    return kind(**raw)


def check_size(size: int) -> int:
    """Image sizes are powers of two from 32 to 256 (the model depth follows log2(size))."""
    if size not in SIZES:
        raise FaceganError(f"--size must be a power of two from 32 to 256 (one of {SIZES}), got {size}")
    return size
