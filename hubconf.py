"""torch.hub entry points: `torch.hub.load("<owner>/facegan", "celeba64")` returns a ready generator.

Each entry returns a `facegan.Generator` (an nn.Module in eval mode): call it on latents,
`g(torch.randn(8, g.latent_dim))` → images in [-1, 1], or use `g.generate(seeds=range(8))` for seeded
PIL faces, `g.generate(seeds=range(8), edit={"Smiling": 1.0})` for attribute edits (`g.edits` names
them; they ship beside the weights and load with them). The weights ship inside the repository
(facegan/pretrained_models/*.safetensors), so nothing else is downloaded. From a local clone:
`torch.hub.load(".", "celeba64", source="local")`.
Inference is exact fp32 by default (`amp="off"`) on the device `auto` picks (CUDA, then MPS, then CPU;
`device="cpu"` to choose), as in the CLI, the Python API and the page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# The same defaults as every other surface (facegan.load, the CLI, the page): decided once, there.
from facegan.config.schema import INFERENCE_AMP_DEFAULT
from facegan.runtime.device import DEFAULT_DEVICE

if TYPE_CHECKING:
    from facegan.api import Generator

# Checked by torch.hub before an entry point runs (import names): every third-party package that
# loading a generator and drawing faces imports (tests/test_surfaces.py checks the list against a real
# load); yaml reads a shipped model's display default (<name>.display.yaml).
dependencies = ["torch", "torchvision", "safetensors", "PIL", "numpy", "yaml"]


def _shipped(name: str, pretrained: bool, device: str, amp: str) -> Generator:
    import facegan
    from facegan.api import Generator
    from facegan.networks.factory import build_models
    from facegan.runtime.device import pick_device

    g = facegan.load(name, device=device, amp=amp)
    if pretrained:
        return g
    # The same architecture, freshly initialised as training would start it (torch.hub's convention).
    fresh, _ = build_models(g.config)
    return Generator(fresh.to(pick_device(device)))


def celeba64(
    pretrained: bool = True, device: str = DEFAULT_DEVICE, amp: str = INFERENCE_AMP_DEFAULT
) -> Generator:
    """The shipped 64×64 CelebA face generator (EMA weights; non-commercial research use only)."""
    return _shipped("celeba64", pretrained, device, amp)


def anime64(
    pretrained: bool = True, device: str = DEFAULT_DEVICE, amp: str = INFERENCE_AMP_DEFAULT
) -> Generator:
    """The shipped 64×64 anime-face generator."""
    return _shipped("anime64", pretrained, device, amp)


def generator(path: str, device: str = DEFAULT_DEVICE, amp: str = INFERENCE_AMP_DEFAULT) -> Generator:
    """Any generator facegan.load reads: a checkpoint, run folder, .safetensors, Hub folder, or a Hub repo
    named "hf:owner/name" (a bare "owner/name" is a local path only).

    The parameter is `path`, not `source`: torch.hub.load takes `source=` ("github" | "local") itself,
    so `torch.hub.load(repo, "generator", path="G.safetensors")` is how to name the file."""
    import facegan

    return facegan.load(path, device=device, amp=amp)
