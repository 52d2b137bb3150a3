"""The stabilizers section of a run's config (`gan:` in a config file): losses, penalties, EMA, DiffAugment.

Kept beside facegan/config/schema.py, which imports it (`from facegan.config.schema import GANConfig`
works as before).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

from facegan.config.check import check_fields, setting
from facegan.errors import FaceganError

DNorm = Literal["auto", "batch", "layer", "none"]
D_NORMS: tuple[str, ...] = typing.get_args(DNorm)
DIFFAUG_OPS = ("color", "translation", "cutout")


def none_is_empty(text: str) -> str:
    """A comma-list flag's "none" (or "off") as the empty list it means."""
    return "" if text.lower() in ("none", "off") else text


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

    # A name in the loss registry (facegan/training/losses.py), checked where it is looked up (before a
    # run writes anything); `facegan train --help` lists the registered ones.
    loss: str = setting("bce", "GAN objective: bce is the seeds' non-saturating loss")
    gp_weight: float = setting(10.0, "gradient-penalty weight of wgan-gp")
    ema_kimg: float = setting(0.0, "EMA of G's weights, half-life in thousands of images (0 = off)")
    spectral_norm: bool = setting(False, "spectral norm on D's convs")
    d_norm: DNorm = setting(
        "auto",
        "D's hidden-layer norm; auto: none with spectral norm, else layer with wgan-gp or R1, else batch",
    )
    diffaug: str = setting(
        "", "DiffAugment ops, a comma list of color,translation,cutout, or none", parse=none_is_empty
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
        check_fields(self)
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
