"""Typed, frozen configuration: one object flows from the CLI into the run folder and every checkpoint.

The defaults are the seed write-ups' DCGAN (Radford et al. as used by the PyTorch example): 64×64 RGB,
latent 100, ngf = ndf = 64, Adam(2e-4, β=(0.5, 0.999)), batch 128, BCE with real=1 / fake=0.

Every setting is declared here once, with `setting(...)`: its type and default, its help text, its
choices and whether a resume may change it. `facegan train`'s flags (facegan/cli_config.py), config
files, presets (facegan/presets/*.yaml) and the resume check are all derived from these fields.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from facegan.errors import FaceganError
from facegan.storage.sizes import check_model_size
from facegan.storage.untrusted import MAX_CONFIG_BYTES, parse_yaml, read_regular

SIZES = (32, 64, 128, 256)
ARCHS = ("dcgan", "r3gan")
G_UPSAMPLES = ("convt", "resize")
# The choice lists, each defined once: the dataclasses validate with them and `facegan train` offers them.
AMP_MODES = ("auto", "off", "bf16", "fp16")
# Inference (generate, evaluate, the Python API, torch.hub, the page) runs in exact fp32 unless asked:
# one default everywhere, so the same seed gives the same pixels through every surface.
INFERENCE_AMP = ("auto", "off", "bf16")
INFERENCE_AMP_DEFAULT = "off"
AUTO_ON_OFF = ("auto", "on", "off")
COMPILE_MODES = ("off", "default", "max-autotune", "reduce-overhead")
GAN_LOSSES = ("bce", "hinge", "lsgan", "wgan-gp", "rpgan")
D_NORMS = ("auto", "batch", "layer", "none")
DIFFAUG_OPS = ("color", "translation", "cutout")
NAN_POLICIES = ("rollback-skip", "rollback-lower-lr", "stop")
# Experiment trackers a run can log to (facegan/trackers.py); TensorBoard is the default.
TRACKERS = ("tensorboard", "mlflow", "wandb")
# Version of the config layout in checkpoints and config files; bump it (and add a migration below)
# whenever a field is added, removed, renamed or changes its default.
CONFIG_SCHEMA = 2


def setting(
    default: Any,
    help: str,
    *,
    choices: tuple[str, ...] | None = None,
    resumable: bool = False,
    parse: Callable[[str], Any] | None = None,
    group: str | None = None,
    flag: bool = True,
    max: float | None = None,
    metavar: str | None = None,
) -> Any:
    """A config field plus what its command-line flag needs (facegan/cli_config.py reads it).

    help: the flag's help, without the default (that is appended from `default`). choices: the allowed
    values, checked by the dataclass and offered by the flag. resumable: may change when a run is
    resumed. parse: converts the flag's text (e.g. "none" → ""). group: a help section other than the
    dataclass's. flag: False for fields that are not meant to be set from the command line. max: the
    largest value allowed, checked by the dataclass before anything is built from it. metavar: the
    flag's placeholder in --help (default: the flag's name in capitals).
    """
    meta = {
        "help": help,
        "choices": choices,
        "resumable": resumable,
        "parse": parse,
        "group": group,
        "flag": flag,
        "max": max,
        "metavar": metavar,
    }
    return field(default=default, metadata=meta)


# The widest network facegan builds: a config read from a file (a checkpoint, an export, a YAML) is
# untrusted, and `ngf: 1000000` would otherwise try to allocate terabytes before any other check. 1024 is
# a model that trains (at 32 px with a narrower D); whether a whole config fits is checked by
# `sizes.check_model_size`, from the config alone.
MAX_WIDTH = 1024
MAX_LATENT = 4096


def _check_choices(obj: Any) -> None:
    """Refuse a value of the wrong type, above its field's `max` or outside its `choices`, in the flags'
    one-line style. Types are checked first, so a config file's `ngf: "64"` or `ngf: 64.5` is one
    line here instead of a TypeError deep inside model building."""
    for f in fields(obj):
        value, flag = getattr(obj, f.name), f"--{f.name.replace('_', '-')}"
        base, optional = _field_types(type(obj))[f.name]
        if not ((value is None and optional) or _is_a(value, base)):
            want = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[base]
            raise FaceganError(f"{flag} must be {want}{' or null' if optional else ''}, got {_shown(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            # NaN compares false with every bound below, so it would pass them all (an infinite EMA
            # half-life would freeze the averaged G at its initialisation).
            raise FaceganError(f"{flag} must be a finite number, got {value}")
        top = f.metadata.get("max")
        if top is not None and value is not None and value > top:
            raise FaceganError(f"{flag} must be at most {top}, got {value}")
        allowed = f.metadata.get("choices")
        if allowed is not None and value not in allowed:
            raise FaceganError(f"{flag} must be one of {', '.join(allowed)}, got {_shown(value)}")


def _shown(value: Any) -> str:
    """A value for an error line: its repr, cut short (a config file's value may be a long list)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_a(value: Any, base: type) -> bool:
    """isinstance for config values: bool is not an int here, and an int is a fine float."""
    if base is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    return isinstance(value, (int, float)) if base is float else isinstance(value, base)


@functools.cache
def _field_types(kind: type) -> dict[str, tuple[type, bool]]:
    # Cached: get_type_hints resolves the string annotations on every call otherwise.
    return {f.name: field_type(kind, f.name) for f in fields(kind)}


def _none_is_empty(text: str) -> str:
    return "" if text.lower() in ("none", "off") else text


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
    arch: str = setting(
        "dcgan", "dcgan (the seeds' networks) or r3gan (residual G/D, no normalisation)", choices=ARCHS
    )
    # No schema bump: a file written before it has the seeds' transposed convs, which the default keeps.
    g_upsample: str = setting(
        "convt",
        "how the dcgan G doubles its resolution: convt (the seeds' 4×4 "
        "stride-2 transposed conv) or resize (nearest ×2, then a 3×3 conv: no "
        "checkerboard artifacts, Odena et al. 2016)",
        choices=G_UPSAMPLES,
    )

    def __post_init__(self) -> None:
        _check_choices(self)
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
        _check_choices(self)
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
    on_nan: str = setting(
        "rollback-skip",
        "when a loss or weight turns NaN/inf: roll back to the last good "
        "checkpoint and skip the batches since the last finite check (rollback-skip), "
        "or halve both learning rates (rollback-lower-lr), or stop (stop)",
        choices=NAN_POLICIES,
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
        "experiment trackers, a comma list of tensorboard, mlflow, "
        "wandb, or none (stats.jsonl is always written)",
        resumable=True,
        parse=_none_is_empty,
    )

    def __post_init__(self) -> None:
        _check_choices(self)
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
        names = self.trackers
        if any(n not in TRACKERS for n in names) or len(set(names)) != len(names):
            raise FaceganError(
                f"--tracker must be a comma list of distinct {', '.join(TRACKERS)} (or none), "
                f"got {self.tracker!r}"
            )

    @property
    def trackers(self) -> tuple[str, ...]:
        """The trackers to log to, e.g. ("tensorboard", "mlflow"); () for "none"."""
        return tuple(n.strip() for n in _none_is_empty(self.tracker.strip()).split(",") if n.strip())


@dataclass(frozen=True)
class PerfConfig:
    """Speed settings. They change how a step is computed, never what it computes (up to rounding).

    "auto" picks per device: on CUDA bf16 autocast, channels_last, fused Adam and a device-resident
    dataset; on CPU channels_last and fused Adam reading the memory-mapped dataset, with bf16 autocast
    where the processor has native bf16 (AVX512-BF16 or AMX) and fp32 elsewhere; on MPS the plain fp32
    path. A run's config.json records the resolved values, never "auto".
    """

    amp: str = setting(
        "auto",
        "autocast dtype (auto: bf16 on CUDA and on CPUs with native bf16, i.e. "
        "AVX512-BF16 or AMX; fp32 elsewhere); off = exact fp32; fp16 uses a GradScaler",
        choices=AMP_MODES,
        resumable=True,
    )
    channels_last: str = setting("auto", "NHWC memory format", choices=AUTO_ON_OFF, resumable=True)
    compile: str = setting(
        "off",
        "torch.compile G and D (reduce-overhead adds CUDA graphs)",
        choices=COMPILE_MODES,
        resumable=True,
    )
    fused_adam: str = setting(
        "auto", "fused Adam kernel (off = foreach)", choices=AUTO_ON_OFF, resumable=True
    )
    resident: str = setting(
        "auto",
        "copy the uint8 dataset to the device once (auto: on for GPUs)",
        choices=AUTO_ON_OFF,
        resumable=True,
    )

    def __post_init__(self) -> None:
        _check_choices(self)


@dataclass(frozen=True)
class GANConfig:
    """Training stabilizers; each is off by default, so the defaults are the seed recipe bit for bit.

    loss: bce (the seeds' non-saturating GAN), hinge (Lim & Ye 2017; Miyato et al. 2018), lsgan (Mao et
    al. 2017), wgan-gp (Gulrajani et al. 2017, with `gp_weight`) or rpgan (relativistic pairing,
    Jolicoeur-Martineau 2019, as R3GAN uses it with R1 + R2). ema_kimg: half-life of the EMA of
    G's weights in thousands of images (Karras et al.), 0 = off. spectral_norm: SN on D's convs (Miyato
    et al. 2018). d_norm: D's hidden-layer norm; "auto" keeps BatchNorm for the plain recipe, drops it
    under spectral norm (SN-GAN's D has none; a norm after each conv would rescale away the Lipschitz
    bound SN sets) and otherwise uses per-sample layer norm when a gradient penalty is on (wgan-gp or
    R1: the penalty is on each sample's input gradient, which BatchNorm couples across the batch;
    Gulrajani et al. suggest layer norm). diffaug: DiffAugment ops (Zhao et al. 2020) as a comma list
    of color, translation, cutout. r1_gamma: R1 penalty γ/2·E‖∇D(x)‖² on reals (Mescheder et al.
    2018), applied every `r1_every` steps and scaled by it (StyleGAN2's lazy regularisation).
    r2_gamma: the same penalty on generated images (R2; R3GAN pairs it with R1), on the same schedule.
    label_smoothing: one-sided, real target 1 - s for D (Salimans et al. 2016; bce only). mbstd_group:
    ProGAN's minibatch standard deviation channel in D (Karras et al. 2018; DCGAN's D only).
    diffaug_p: the probability each DiffAugment op reaches each image (ADA's per-image p, fixed).
    """

    loss: str = setting(
        "bce",
        "GAN objective: bce (the seeds' non-saturating loss), hinge, lsgan, wgan-gp, "
        "rpgan (relativistic pairing)",
        choices=GAN_LOSSES,
    )
    gp_weight: float = setting(10.0, "gradient-penalty weight of wgan-gp")
    ema_kimg: float = setting(0.0, "EMA of G's weights, half-life in thousands of images (0 = off)")
    spectral_norm: bool = setting(False, "spectral norm on D's convs")
    d_norm: str = setting(
        "auto",
        "D's hidden-layer norm; auto: none with spectral norm, else layer with wgan-gp or R1, else batch",
        choices=D_NORMS,
    )
    diffaug: str = setting(
        "", "DiffAugment ops, a comma list of color,translation,cutout, or none", parse=_none_is_empty
    )
    r1_gamma: float = setting(0.0, "R1 penalty gamma on real images (0 = off)")
    r1_every: int = setting(16, "apply R1 and R2 every N steps, scaled by N")
    label_smoothing: float = setting(0.0, "one-sided: D's real target is 1 - s (bce only)")
    r2_gamma: float = setting(0.0, "R2 penalty gamma on generated images (0 = off)")
    # No schema bump: a run written before it had no such layer, which the default (0) keeps.
    mbstd_group: int = setting(
        0,
        "minibatch standard deviation layer before D's last conv, over groups "
        "of N images (ProGAN); shows D a batch's lack of variety (0 = off)",
        max=256,
    )
    # No schema bump either: 1.0 (every op on every image) is what runs before it did.
    diffaug_p: float = setting(
        1.0,
        "probability that each DiffAugment op reaches each image (ADA's p); "
        "below 1 D also sees un-augmented images, e.g. exact face positions",
    )

    def __post_init__(self) -> None:
        _check_choices(self)
        for name in ("gp_weight", "ema_kimg", "r1_gamma", "r2_gamma", "mbstd_group"):
            if getattr(self, name) < 0:
                raise FaceganError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.r1_every < 1:
            raise FaceganError(f"--r1-every must be >= 1, got {self.r1_every}")
        if not 0 <= self.diffaug_p <= 1:
            raise FaceganError(f"--diffaug-p must be in [0, 1], got {self.diffaug_p}")
        if not 0 <= self.label_smoothing < 1:
            raise FaceganError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.label_smoothing and self.loss != "bce":
            raise FaceganError(f"--label-smoothing applies to the bce loss only, not --loss {self.loss}")
        if self.loss == "wgan-gp" and self.d_norm == "batch":
            raise FaceganError(
                "--loss wgan-gp needs a per-sample D: use --d-norm layer, none or auto, "
                "not batch (BatchNorm couples the samples the gradient penalty is taken on)"
            )
        ops = self.diffaug_ops
        bad = [op for op in ops if op not in DIFFAUG_OPS]
        if bad or len(set(ops)) != len(ops):
            raise FaceganError(
                f"--diffaug must be a comma list of distinct {', '.join(DIFFAUG_OPS)} "
                f"(or empty for none), got {self.diffaug!r}"
            )

    @property
    def diffaug_ops(self) -> tuple[str, ...]:
        """The DiffAugment ops in the order they apply, e.g. ("color", "translation")."""
        return tuple(op.strip() for op in self.diffaug.split(",") if op.strip())

    @property
    def resolved_d_norm(self) -> str:
        """D's hidden-layer norm with "auto" decided: none under SN, else layer with a gradient penalty
        (wgan-gp or R1), else batch (the seed)."""
        if self.d_norm != "auto":
            return self.d_norm
        if self.spectral_norm:
            return "none"
        return "layer" if self.loss == "wgan-gp" or self.r1_gamma > 0 or self.r2_gamma > 0 else "batch"


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
    return {
        f.name: f.default_factory
        for f in fields(RunConfig)  # type: ignore[misc]
        if f.name != "preset"
    }


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


# Presets are data: partial config files in facegan/presets/<name>.yaml (the layout --print-config
# prints), so a preset and a user's --config file are read by the same code and checked the same way.
DEFAULT_PRESET = "dcgan"


def preset_names() -> list[str]:
    """The shipped presets, the default first, then alphabetically."""
    names = sorted(p.name[: -len(".yaml")] for p in _presets_dir().iterdir() if p.name.endswith(".yaml"))
    return sorted(names, key=lambda n: n != DEFAULT_PRESET)


def _presets_dir() -> Any:
    return resources.files("facegan") / "presets"


@functools.cache
def _preset_sections(name: str) -> dict[str, dict[str, Any]]:
    if name not in preset_names():
        raise FaceganError(f"unknown preset {name!r}; choose one of: {', '.join(preset_names())}")
    where = f"preset {name}"
    raw = parse_config_yaml((_presets_dir() / f"{name}.yaml").read_text(encoding="utf-8"), where)
    if "preset" in raw or "schema" in raw:  # a preset cannot name another preset
        raise FaceganError(f"{where}: only config sections belong in a preset, not 'preset' or 'schema'")
    return raw


def preset_config(name: str) -> RunConfig:
    """The RunConfig of a named preset."""
    return apply_sections(RunConfig(preset=name), _preset_sections(name))


def __getattr__(name: str) -> Any:
    """`PRESETS` ({name: partial sections}), read from the preset files on first use."""
    if name == "PRESETS":
        return {n: copy.deepcopy(_preset_sections(n)) for n in preset_names()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ----------------------------------------------------------------------------- config files (YAML)


def field_type(kind: type, name: str) -> tuple[type, bool]:
    """(base type, None allowed) of a section field, e.g. (int, True) for `steps: int | None`."""
    hint = typing.get_type_hints(kind)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return (args[0] if args else hint), type(None) in typing.get_args(hint)


def _coerce(kind: type, name: str, value: Any, where: str, section: str) -> Any:
    """A YAML value as the field's type, or one line naming the key. YAML 1.1 (PyYAML) reads `2e-4`
    as a string, so numeric strings are accepted for float fields."""
    base, optional = field_type(kind, name)
    if value is None and optional:
        return None
    if base is float and not isinstance(value, bool):
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif (base is int and isinstance(value, int) and not isinstance(value, bool)) or (
        base in (str, bool) and isinstance(value, base)
    ):
        return value
    want = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[base]
    raise FaceganError(
        f"{where}: {section}.{name} must be {want}{' or null' if optional else ''}, got {_shown(value)}"
    )


def parse_config_yaml(text: str, where: str) -> dict[str, Any]:
    """A config file's text → {"preset"?, "schema"?, section: {field: value}}, every key checked.

    Partial files are fine (what they leave out comes from the preset); an unknown key is one line
    naming it, so a typo never passes silently. Size and nesting are bounded and YAML aliases refused
    before anything is built from the text (facegan.storage.untrusted.parse_yaml)."""
    raw = parse_yaml(text, where)
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise FaceganError(f"{where} must hold a mapping of config sections, not a {type(raw).__name__}")
    kinds = section_types()
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "schema":
            if value != CONFIG_SCHEMA:
                raise FaceganError(
                    f"{where}: schema {value!r} is not this facegan's config schema "
                    f"({CONFIG_SCHEMA}); re-create the file with --print-config"
                )
            out[key] = value
        elif key == "preset":
            if not isinstance(value, str):
                raise FaceganError(f"{where}: preset must be a preset name, got {_shown(value)}")
            out[key] = value
        elif key in kinds:
            value = {} if value is None else value
            if not isinstance(value, dict):
                raise FaceganError(f"{where}: {key} must be a mapping of its settings, got {_shown(value)}")
            known = [f.name for f in fields(kinds[key])]
            for name in value:
                if name not in known:
                    raise FaceganError(f"{where}: unknown key '{key}.{name}' ({key} has: {', '.join(known)})")
            out[key] = {name: _coerce(kinds[key], name, v, where, key) for name, v in value.items()}
        else:
            raise FaceganError(
                f"{where}: unknown key {key!r} (a config file has: schema, preset, {', '.join(kinds)})"
            )
    return out


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read and check a `--config` YAML file (see `parse_config_yaml`); a FIFO or device is refused
    rather than waited on, and a file larger than any config is refused before it is read."""
    try:
        text = read_regular(path, "--config", MAX_CONFIG_BYTES).decode("utf-8")
    except UnicodeDecodeError as err:
        raise FaceganError(f"--config {str(path)!r}: cannot read it ({err})") from None
    return parse_config_yaml(text, str(path))


def to_yaml(cfg: RunConfig) -> str:
    """The complete config as a YAML config file, in field order, ready to edit and pass to --config."""
    import yaml

    body = yaml.safe_dump({"schema": CONFIG_SCHEMA, **cfg.to_dict()}, sort_keys=False, allow_unicode=True)
    return f"# facegan train config; edit and run: facegan train --config FILE.yaml\n{body}"


def apply_sections(base: RunConfig, sections: dict[str, Any]) -> RunConfig:
    """`base` with the fields of partial `{section: {field: value}}` replaced (keys already checked)."""
    changes = {
        sec: dataclasses.replace(getattr(base, sec), **vals)
        for sec, vals in sections.items()
        if sec in section_types() and vals
    }
    return base.replace(**changes)


def resolve_config(preset: str | None, file: dict[str, Any] | None, flags: dict[str, Any]) -> RunConfig:
    """Layer the settings: defaults < preset < config file < flags given on the command line.

    The preset is `preset` (the --preset flag), else the file's `preset`, else dcgan."""
    file = file or {}
    name = preset or file.get("preset") or DEFAULT_PRESET
    return with_overrides(apply_sections(preset_config(name), file), flags)


def flat_fields(sections: dict[str, Any]) -> dict[str, Any]:
    """`{section: {field: value}}` → `{field: value}` (field names are unique across sections)."""
    return {k: v for sec, vals in sections.items() if sec in section_types() for k, v in vals.items()}


def resumable_fields() -> frozenset[str]:
    """Fields a resumed run may change (its length, where it runs, how often it reports)."""
    return frozenset(
        f.name for kind in section_types().values() for f in fields(kind) if f.metadata.get("resumable")
    )


# ----------------------------------------------------------------------------- checkpoint migrations


def migrate_config(raw: dict[str, Any], schema: int) -> dict[str, Any]:
    """A checkpoint's config dict written under `schema`, brought to CONFIG_SCHEMA.

    Each step pins what the older format meant, so an old checkpoint keeps training as it did even
    after a default changes."""
    if not isinstance(schema, int) or schema < 1:
        raise FaceganError(f"invalid config schema {schema!r} in this checkpoint")
    if schema > CONFIG_SCHEMA:
        raise FaceganError(
            f"this checkpoint was written by a newer facegan (config schema {schema}; this "
            f"one reads up to {CONFIG_SCHEMA}); upgrade facegan to use it"
        )
    out = copy.deepcopy(raw)
    for step in range(schema, CONFIG_SCHEMA):
        out = _MIGRATIONS[step](out)
    return out


def _from_schema_1(raw: dict[str, Any]) -> dict[str, Any]:
    """Schema 1: checkpoints before the schema was recorded (facegan 0.1.0 up to R3GAN). Their
    sections may lack fields added later; those get the value that reproduces what the run did."""
    pinned: dict[str, dict[str, Any]] = {
        "model": {"arch": "dcgan"},  # only the DCGAN networks existed
        "gan": {"r2_gamma": 0.0},  # no R2 penalty existed
    }
    if "perf" not in raw:  # written before the speed settings: the plain fp32 path
        pinned["perf"] = {
            "amp": "off",
            "channels_last": "off",
            "compile": "off",
            "fused_adam": "off",
            "resident": "off",
        }
    out = {"preset": raw.get("preset", DEFAULT_PRESET)}
    for sec, kind in section_types().items():
        given = raw.get(sec, {})
        defaults = {f.name: f.default for f in fields(kind)}
        out[sec] = {**defaults, **pinned.get(sec, {}), **given}
    return out


_MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _from_schema_1}


def with_overrides(base: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """Apply flat `{field: value}` overrides (from CLI flags) to whichever section owns each field."""
    sections: dict[str, dict[str, Any]] = {sec: {} for sec in section_types()}
    owners = {f.name: sec for sec, kind in section_types().items() for f in fields(kind)}
    for key, value in overrides.items():
        if key not in owners:
            raise FaceganError(f"unknown config field {key!r}")
        sections[owners[key]][key] = value
    return base.replace(
        **{sec: dataclasses.replace(getattr(base, sec), **vals) for sec, vals in sections.items() if vals}
    )
