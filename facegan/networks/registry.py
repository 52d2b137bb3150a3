"""The architecture registry: `--arch NAME` is looked up here.

Like the metric registry (facegan/metrics/registry.py), a new architecture joins in one place: an
`Architecture` entry passed to `register_architecture` (facegan/networks/architectures.py holds the
built-in ones). `build_generator` / `build_models` (facegan/networks/factory.py) only look names up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from facegan.config.gan import GANConfig
from facegan.config.schema import ModelConfig
from facegan.registry import Registry


def _no_check(model: ModelConfig, gan: GANConfig) -> None:
    """The default: every GANConfig option applies to the architecture."""


@dataclass(frozen=True)
class Architecture:
    """One `--arch`: how to build its G and D, how to initialise them, and which options it refuses.

    `init` initialises a whole freshly built network in place, under the seeded RNG of `build_models`;
    `check` raises FaceganError (one line) for GANConfig options that do not apply to it.
    """

    name: str
    summary: str  # one line for `--help` and the docs
    generator: Callable[[ModelConfig], nn.Module]
    discriminator: Callable[[ModelConfig, GANConfig], nn.Module]
    init: Callable[[nn.Module], None]
    check: Callable[[ModelConfig, GANConfig], None] = _no_check


ARCHITECTURES: Registry[Architecture] = Registry("--arch")


def register_architecture(arch: Architecture) -> Architecture:
    """File `arch` under its name, so `--arch NAME`, checkpoints and exports of it resolve."""
    return ARCHITECTURES.add(arch.name, arch)


def get_architecture(name: str) -> Architecture:
    """The registered architecture `name`, or one line naming the ones there are."""
    return ARCHITECTURES.get_entry(name)
