"""The built-in architectures, each one `register_architecture` call (facegan/networks/registry.py)."""

from __future__ import annotations

from torch import nn

from facegan.config.gan import GANConfig
from facegan.config.schema import ModelConfig
from facegan.errors import FaceganError
from facegan.networks.dcgan import DCGANGenerator, Discriminator, init_weights
from facegan.networks.r3gan import ResDiscriminator, ResGenerator, init_residual
from facegan.networks.registry import Architecture, register_architecture


def _dcgan_init(net: nn.Module) -> None:
    net.apply(init_weights)  # the seeds' per-layer rule, on every conv and norm


def _dcgan_discriminator(model: ModelConfig, gan: GANConfig) -> nn.Module:
    return Discriminator(model, gan.resolved_d_norm, gan.mbstd_group)


def _r3gan_discriminator(model: ModelConfig, gan: GANConfig) -> nn.Module:
    return ResDiscriminator(model)


def _r3gan_check(model: ModelConfig, gan: GANConfig) -> None:
    if gan.d_norm not in ("auto", "none"):
        raise FaceganError(
            f"--arch r3gan has no normalisation layers; --d-norm {gan.d_norm} does not apply "
            "(use auto or none)"
        )
    if gan.mbstd_group:
        raise FaceganError("--mbstd-group applies to the dcgan discriminator only, not --arch r3gan")


DCGAN = register_architecture(
    Architecture(
        name="dcgan",
        summary="the seeds' networks: transposed-conv G, strided-conv D with BatchNorm",
        generator=DCGANGenerator,
        discriminator=_dcgan_discriminator,
        init=_dcgan_init,
    )
)

R3GAN = register_architecture(
    Architecture(
        name="r3gan",
        summary="residual G and D without normalisation, R3GAN-style (a small sketch, not the paper's)",
        generator=ResGenerator,
        discriminator=_r3gan_discriminator,
        init=init_residual,
        check=_r3gan_check,
    )
)
