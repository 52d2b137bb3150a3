"""Networks of a registered architecture from a ModelConfig: `build_generator` for loading weights into,
`build_models` for a fresh, deterministically initialised G and D. The architectures themselves are
looked up by `arch` in facegan/networks/registry.py (built-ins: facegan/networks/architectures.py)."""

from __future__ import annotations

import torch
from torch import nn

import facegan.networks.architectures  # noqa: F401  (registers the built-in architectures)
from facegan.config.gan import GANConfig
from facegan.config.schema import ModelConfig
from facegan.networks.dcgan import add_spectral_norm
from facegan.networks.registry import ARCHITECTURES, get_architecture

__all__ = ["ARCHITECTURES", "build_generator", "build_models", "get_architecture"]


def build_generator(cfg: ModelConfig) -> nn.Module:
    """An uninitialised generator of `cfg.arch` (weights are loaded or initialised by the caller)."""
    return get_architecture(cfg.arch).generator(cfg)


def build_models(
    cfg: ModelConfig, seed: int = 0, gan: GANConfig | None = None
) -> tuple[nn.Module, nn.Module]:
    """Fresh G and D of `cfg.arch`, initialised deterministically in `seed` by the architecture's own
    rule (DCGAN init for dcgan, fix-up init for r3gan). `gan` picks D's options (norm, minibatch std,
    spectral norm), each checked by the architecture first."""
    gan = gan or GANConfig()
    arch = get_architecture(cfg.arch)
    arch.check(cfg, gan)
    # A private generator keeps initialisation independent of whatever used the global RNG before.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        g, d = arch.generator(cfg), arch.discriminator(cfg, gan)
        arch.init(g)
        arch.init(d)
        if gan.spectral_norm:  # after init, which writes the raw weights that SN then wraps
            add_spectral_norm(d)
    return g, d
