"""How big a model a config asks for, known from the config alone, so a size the machine cannot hold is
refused in one line before anything is allocated (a config may come from a file someone else wrote).

The estimate is an upper bound on the parameters of both architectures: the DCGAN's 4×4 convolutions
between the stages (facegan/networks/dcgan.py), which the R3GAN networks (1×1 convs and grouped 3×3 ones,
facegan/networks/r3gan.py) stay below at every width and size; tests/storage/test_handed_files.py
checks it against real builds on the meta device.
"""

from __future__ import annotations

import itertools
import math

MAX_WIDTH_MULT = 8  # stage widths are capped at 8× ngf/ndf, so 128/256 px stay sane
# Training holds per parameter: weights, gradients and two Adam moments (16 bytes), an EMA copy of G,
# the in-memory start state until the first checkpoint, and a loaded checkpoint during a rollback:
# about 36 bytes. 300 million parameters is then ~10 GiB, which leaves a 24 GiB machine room for the
# activations of a batch, the data and PyTorch itself.
MAX_PARAMS = 300_000_000
BYTES_PER_PARAM = 36
SLACK = 10_000


def stage_widths(size: int, base: int) -> list[int]:
    """Channel widths of the DCGAN's stages from 4×4 up to size/2, e.g. 64 px → [8b, 4b, 2b, b]."""
    n_stages = int(math.log2(size)) - 2
    return [base * min(2 ** (n_stages - 1 - i), MAX_WIDTH_MULT) for i in range(n_stages)]


def estimate_params(size: int, latent_dim: int, ngf: int, ndf: int, channels: int) -> tuple[int, int]:
    """(generator, discriminator) parameters, an upper bound for either architecture. Pure integer
    arithmetic: `ngf` 10^9 costs nothing to estimate."""
    w, v = stage_widths(size, ngf), stage_widths(size, ndf)
    # SLACK covers what the formulas leave out at tiny widths (the R3GAN's 8-channel floor).
    return (
        max(_dcgan(w, latent_dim, channels), _residual(w, ngf, latent_dim, channels)) + SLACK,
        max(_dcgan(v, 1, channels), _residual(v, ndf, 1, channels)) + SLACK,
    )


def _dcgan(w: list[int], latent_dim: int, channels: int) -> int:
    """The DCGAN G (or, with latent_dim 1, D): 4×4 convs from z (or to the logit) through the stages
    to RGB, and at most 3 norm or bias values per channel."""
    inner = sum(a * b for a, b in itertools.pairwise(w))
    return 16 * (latent_dim * w[0] + inner + (w[-1] + 1) * channels + w[0]) + 3 * sum(w) + 1


def _residual(w: list[int], base: int, latent_dim: int, channels: int) -> int:
    """The R3GAN G (or D): a residual block per stage (1×1 expand and project, 4 w² with expansion 2,
    and a grouped 3×3 conv of 16-channel groups, 288 w, plus biases), 1×1 transitions between stages,
    and at the ends z to a 4×4 basis (D: a depthwise 4×4 conv and a linear logit) and the RGB conv."""
    stages = [*w, max(base // 2, 8)]  # one more stage at full resolution
    blocks = sum(4 * s * s + 300 * s for s in stages)
    transitions = sum(a * b + b for a, b in itertools.pairwise(stages))
    return blocks + transitions + 17 * (latent_dim + 1) * w[0] + (stages[-1] + 1) * channels + 1


def check_model_size(size: int, latent_dim: int, ngf: int, ndf: int, channels: int) -> None:
    """Raise ValueError (one line, the caller's error type wraps it) when G and D together would exceed
    MAX_PARAMS: the line says how large they would be and what to lower."""
    n_g, n_d = estimate_params(size, latent_dim, ngf, ndf, channels)
    if n_g + n_d > MAX_PARAMS:
        gib = MAX_PARAMS * BYTES_PER_PARAM / 2**30
        raise ValueError(
            f"--ngf {ngf}, --ndf {ndf} and --latent-dim {latent_dim} at --size {size} make about "
            f"{_millions(n_g)} generator and {_millions(n_d)} discriminator parameters; facegan builds at "
            f"most {_millions(MAX_PARAMS)} (G and D together, ~{gib:.0f} GiB to train) — lower --ngf, "
            f"--ndf or --size"
        )


def _millions(n: int) -> str:
    return f"{n / 1e6:,.0f} million"
