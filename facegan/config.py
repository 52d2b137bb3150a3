"""Typed, frozen configuration: one object flows from the CLI into the run folder and every checkpoint.

The defaults are the seed write-ups' DCGAN (Radford et al. as used by the PyTorch example): 64×64 RGB,
latent 100, ngf = ndf = 64, Adam(2e-4, β=(0.5, 0.999)), batch 128, BCE with real=1 / fake=0.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from typing import Any

from facegan.errors import FaceganError

SIZES = (32, 64, 128, 256)
ARCHS = ("dcgan", "r3gan")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of G and D; depth follows `size` (one stage per doubling above 4×4).

    arch: "dcgan" (the seeds' transposed-conv G and strided-conv D with BatchNorm) or "r3gan" (residual
    G and D without normalisation, R3GAN-style; `facegan/r3gan.py`). ngf/ndf set the widths of both.
    """

    size: int = 64
    latent_dim: int = 100
    ngf: int = 64
    ndf: int = 64
    channels: int = 3
    arch: str = "dcgan"

    def __post_init__(self) -> None:
        check_size(self.size)
        if self.arch not in ARCHS:
            raise FaceganError(f"--arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        for name in ("latent_dim", "ngf", "ndf", "channels"):
            if getattr(self, name) < 1:
                raise FaceganError(f"{name} must be a positive integer, got {getattr(self, name)}")


@dataclass(frozen=True)
class OptimConfig:
    """Adam for both networks, as in the DCGAN paper."""

    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999


@dataclass(frozen=True)
class TrainConfig:
    """Everything about one training run except the architecture and optimizer."""

    data: str = "synthetic"
    batch_size: int = 128
    epochs: int = 5
    steps: int | None = None  # when set, overrides `epochs`
    seed: int = 0
    device: str = "auto"
    hflip: bool = False  # the seeds do not flip; a common, label-free augmentation for faces
    log_every: int = 10
    sample_every: int = 200
    ckpt_every: int = 500
    keep_ckpts: int = 3
    num_samples: int = 64  # size of the fixed-noise grid
    synthetic_count: int = 8192  # images drawn when `data` is "synthetic"
    eval_every: int = 0  # steps between quality measurements during training; 0 = never
    eval_metrics: str = "c2st"  # comma list of metric protocols; the first one picks the best checkpoint
    eval_num_fake: int = 0  # generated images per evaluation; 0 = the protocol's own count
    inception_weights: str | None = None  # local FID Inception weights for fid*/kid* metrics

    def __post_init__(self) -> None:
        for name in ("batch_size", "epochs", "log_every", "sample_every", "ckpt_every", "keep_ckpts",
                     "num_samples", "synthetic_count"):
            if getattr(self, name) < 1:
                raise FaceganError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.eval_every < 0 or self.eval_num_fake < 0:
            raise FaceganError("--eval-every and --eval-num-fake must be >= 0")
        if self.steps is not None and self.steps < 1:
            raise FaceganError(f"--steps must be >= 1, got {self.steps}")


@dataclass(frozen=True)
class PerfConfig:
    """Speed settings. They change how a step is computed, never what it computes (up to rounding).

    "auto" picks per device: on CUDA bf16 autocast, channels_last, fused Adam and a device-resident
    dataset; on CPU channels_last and fused Adam reading the memory-mapped dataset, with bf16 autocast
    where the processor has native bf16 (AVX512-BF16 or AMX) and fp32 elsewhere; on MPS the plain fp32
    path. A run's config.json records the resolved values, never "auto".
    """

    amp: str = "auto"  # auto | off | bf16 | fp16 (fp16 uses a GradScaler)
    channels_last: str = "auto"  # auto | on | off
    compile: str = "off"  # off | default | max-autotune | reduce-overhead (CUDA graphs)
    fused_adam: str = "auto"  # auto | on | off (off = foreach)
    resident: str = "auto"  # auto | on | off: copy the uint8 dataset to the device once

    def __post_init__(self) -> None:
        choices = {"amp": ("auto", "off", "bf16", "fp16"), "channels_last": ("auto", "on", "off"),
                   "compile": ("off", "default", "max-autotune", "reduce-overhead"),
                   "fused_adam": ("auto", "on", "off"), "resident": ("auto", "on", "off")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise FaceganError(f"--{name.replace('_', '-')} must be one of {', '.join(allowed)}, "
                                   f"got {getattr(self, name)!r}")


GAN_LOSSES = ("bce", "hinge", "lsgan", "wgan-gp", "rpgan")
D_NORMS = ("auto", "batch", "layer", "none")
DIFFAUG_OPS = ("color", "translation", "cutout")


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
    label_smoothing: one-sided, real target 1 - s for D (Salimans et al. 2016; bce only).
    """

    loss: str = "bce"
    gp_weight: float = 10.0  # λ of WGAN-GP; only read when loss is wgan-gp
    ema_kimg: float = 0.0
    spectral_norm: bool = False
    d_norm: str = "auto"
    diffaug: str = ""
    r1_gamma: float = 0.0
    r1_every: int = 16
    label_smoothing: float = 0.0
    r2_gamma: float = 0.0

    def __post_init__(self) -> None:
        if self.loss not in GAN_LOSSES:
            raise FaceganError(f"--loss must be one of {', '.join(GAN_LOSSES)}, got {self.loss!r}")
        if self.d_norm not in D_NORMS:
            raise FaceganError(f"--d-norm must be one of {', '.join(D_NORMS)}, got {self.d_norm!r}")
        for name in ("gp_weight", "ema_kimg", "r1_gamma", "r2_gamma"):
            if getattr(self, name) < 0:
                raise FaceganError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.r1_every < 1:
            raise FaceganError(f"--r1-every must be >= 1, got {self.r1_every}")
        if not 0 <= self.label_smoothing < 1:
            raise FaceganError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.label_smoothing and self.loss != "bce":
            raise FaceganError(f"--label-smoothing applies to the bce loss only, not --loss {self.loss}")
        if self.loss == "wgan-gp" and self.d_norm == "batch":
            raise FaceganError("--loss wgan-gp needs a per-sample D: use --d-norm layer, none or auto, "
                               "not batch (BatchNorm couples the samples the gradient penalty is taken on)")
        ops = self.diffaug_ops
        bad = [op for op in ops if op not in DIFFAUG_OPS]
        if bad or len(set(ops)) != len(ops):
            raise FaceganError(f"--diffaug must be a comma list of distinct {', '.join(DIFFAUG_OPS)} "
                               f"(or empty for none), got {self.diffaug!r}")

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
    return {f.name: f.default_factory for f in fields(RunConfig)  # type: ignore[misc]
            if f.name != "preset"}


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


# γ of R1 and R2 in the r3gan preset, chosen by a pilot on the 6k CelebA sample (README).
R3GAN_GAMMA = 1.0

# Presets are partial overrides of the defaults, grouped by section.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # The seed DCGAN (PyTorch example / anh-nn01 / neptune write-ups): latent 100.
    "dcgan": {},
    # The Jovian/anime write-ups' variant: latent tensor of shape (128, 1, 1).
    "dcgan-z128": {"model": {"latent_dim": 128}},
    # A small, quick DCGAN for CPU demos (the README's first command): 32×32, half-width nets.
    "tiny": {
        "model": {"size": 32, "ngf": 32, "ndf": 32},
        "train": {"batch_size": 64, "epochs": 12, "sample_every": 100, "ckpt_every": 250, "log_every": 5},
    },
    # The stronger DCGAN-size preset, chosen by measurement (README "Quality"): the seed DCGAN plus
    # G's weights averaged with a 10 kimg half-life (StyleGAN's default; samples, export and evaluation
    # use the average) and DiffAugment color,translation (Zhao et al. 2020) for small datasets. On the
    # 6k CelebA sample at equal budget it beat dcgan (SWD 21.4 vs 25.6) and sngan-da (40.1).
    "dcgan-plus": {
        "gan": {"diffaug": "color,translation", "ema_kimg": 10.0},
    },
    # The modern architecture (README "Which architecture"): R3GAN-style residual G and D without
    # normalisation (facegan/r3gan.py), relativistic pairing loss with R1 on real and R2 on fake images
    # (Huang et al. 2024), Adam β = (0, 0.99) as in R3GAN/StyleGAN2, EMA 10 kimg and DiffAugment
    # color,translation for small datasets as in dcgan-plus. The penalties are lazy (every 16 steps,
    # scaled by 16; StyleGAN2) to keep a CPU step cheap.
    "r3gan": {
        "model": {"arch": "r3gan"},
        "optim": {"lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.0, "beta2": 0.99},
        "gan": {"loss": "rpgan", "r1_gamma": R3GAN_GAMMA, "r2_gamma": R3GAN_GAMMA, "r1_every": 16,
                "ema_kimg": 10.0, "diffaug": "color,translation"},
    },
    # SN-GAN-style variant that lost that comparison at a short budget, kept for longer runs: hinge
    # loss + spectral norm on D's convs, D without BatchNorm (Miyato et al. 2018, setting C: Adam(2e-4,
    # β=(0.5, 0.999)), one D step per G step), DiffAugment color,translation,cutout, EMA 10 kimg.
    "sngan-da": {
        "optim": {"lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.5, "beta2": 0.999},
        "gan": {"loss": "hinge", "spectral_norm": True, "d_norm": "auto",
                "diffaug": "color,translation,cutout", "ema_kimg": 10.0},
    },
}


def preset_config(name: str) -> RunConfig:
    """The RunConfig of a named preset."""
    if name not in PRESETS:
        raise FaceganError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    over = PRESETS[name]
    return RunConfig(preset=name, **{sec: kind(**over.get(sec, {})) for sec, kind in section_types().items()})


def with_overrides(base: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """Apply flat `{field: value}` overrides (from CLI flags) to whichever section owns each field."""
    sections: dict[str, dict[str, Any]] = {sec: {} for sec in section_types()}
    owners = {f.name: sec for sec, kind in section_types().items() for f in fields(kind)}
    for key, value in overrides.items():
        if key not in owners:
            raise FaceganError(f"unknown config field {key!r}")
        sections[owners[key]][key] = value
    return base.replace(**{
        sec: dataclasses.replace(getattr(base, sec), **vals) for sec, vals in sections.items() if vals
    })
