"""Networks of either architecture from a ModelConfig: `build_generator` for loading weights into,
`build_models` for a fresh, deterministically initialised G and D (`arch` dcgan: facegan/networks/dcgan.py;
r3gan: facegan/networks/r3gan.py)."""

from __future__ import annotations

import torch
from torch import nn

from facegan.config.schema import GANConfig, ModelConfig
from facegan.errors import FaceganError
from facegan.networks.dcgan import Discriminator, Generator, add_spectral_norm, init_weights


def build_generator(cfg: ModelConfig) -> nn.Module:
    """An uninitialised generator of `cfg.arch` (weights are loaded or initialised by the caller)."""
    if cfg.arch == "r3gan":
        from facegan.networks.r3gan import ResGenerator

        return ResGenerator(cfg)
    return Generator(cfg)


def build_models(
    cfg: ModelConfig, seed: int = 0, gan: GANConfig | None = None
) -> tuple[nn.Module, nn.Module]:
    """Fresh G and D of `cfg.arch`, initialised deterministically in `seed`: DCGAN init for dcgan,
    fix-up init for r3gan. `gan` picks the DCGAN D's norm, and spectral norm for either."""
    gan = gan or GANConfig()
    if cfg.arch == "r3gan" and gan.d_norm not in ("auto", "none"):
        raise FaceganError(
            f"--arch r3gan has no normalisation layers; --d-norm {gan.d_norm} does not "
            f"apply (use auto or none)"
        )
    if cfg.arch == "r3gan" and gan.mbstd_group:
        raise FaceganError("--mbstd-group applies to the dcgan discriminator only, not --arch r3gan")
    # A private generator keeps initialisation independent of whatever used the global RNG before.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if cfg.arch == "r3gan":
            from facegan.networks.r3gan import ResDiscriminator, ResGenerator, init_residual

            g, d = ResGenerator(cfg), ResDiscriminator(cfg)
            init_residual(g)
            init_residual(d)
        else:
            g, d = Generator(cfg), Discriminator(cfg, gan.resolved_d_norm, gan.mbstd_group)
            g.apply(init_weights)
            d.apply(init_weights)
        if gan.spectral_norm:  # after init, which writes the raw weights that SN then wraps
            add_spectral_norm(d)
    return g, d
