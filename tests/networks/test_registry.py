"""The architecture registry: a new `--arch` joins in one place and every verb that builds or loads
networks finds it; an unknown name is one line naming the registered ones."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from facegan.cli.main import main
from facegan.cli.train import train_verb
from facegan.config.schema import GANConfig, ModelConfig
from facegan.errors import FaceganError
from facegan.networks.checkpoint import export_generator
from facegan.networks.dcgan import DCGANGenerator, Discriminator, init_weights
from facegan.networks.factory import ARCHITECTURES, build_generator, build_models
from facegan.networks.registry import Architecture, register_architecture
from facegan.sampling.generate import load_generator

TINY = ModelConfig(size=32, ngf=4, ndf=4, latent_dim=8)


class WideOutGenerator(DCGANGenerator):
    """The DCGAN generator with a different init rule, enough to tell the two apart."""


def _init_ones_bias(net: nn.Module) -> None:
    net.apply(init_weights)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.bias, 0.25)


@pytest.fixture
def plugin() -> Iterator[Architecture]:
    """A third architecture, registered the way a contributor adds one (and removed after the test)."""
    yield register_architecture(
        Architecture(
            name="plugin",
            summary="a test architecture",
            generator=WideOutGenerator,
            discriminator=lambda model, gan: Discriminator(model, gan.resolved_d_norm),
            init=_init_ones_bias,
        )
    )
    del ARCHITECTURES["plugin"]


def test_a_registered_architecture_builds_exports_and_loads(plugin: Architecture, tmp_path: Path) -> None:
    cfg = ModelConfig(size=32, ngf=4, ndf=4, latent_dim=8, arch="plugin")
    g, d = build_models(cfg, seed=3)
    assert type(g) is WideOutGenerator and isinstance(d, Discriminator)
    bn = next(m for m in g.modules() if isinstance(m, nn.BatchNorm2d))
    assert torch.all(bn.bias == 0.25)  # its own init ran, under the seed
    g2, _ = build_models(cfg, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(g.state_dict().values(), g2.state_dict().values()))
    path = export_generator(g, cfg, tmp_path / "plugin.safetensors")
    loaded = load_generator(path)
    z = torch.randn(2, 8, 1, 1)
    g.eval()
    with torch.no_grad():
        assert torch.allclose(loaded(z), g(z), atol=1e-6)
    assert type(build_generator(cfg)) is WideOutGenerator


def test_a_registered_architecture_trains_from_the_cli(
    plugin: Architecture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    help_text = train_verb().parser.format_help()
    assert "{dcgan,r3gan,plugin}" in help_text  # --help lists what the registry holds
    args = ["train", "--arch", "plugin", "--preset", "tiny", "--dry-run", "--outdir", str(tmp_path)]
    code = main(args)
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "(plugin, 32px" in out.out + out.err and "first step     ok" in out.out + out.err


def test_unknown_architecture_is_one_line_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--arch", "stylegan9", "--steps", "1", "--outdir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "unknown --arch 'stylegan9'; choose one of dcgan, r3gan" in err
    assert not (tmp_path / "runs").exists()
    with pytest.raises(FaceganError, match="unknown --arch"):
        build_generator(ModelConfig(arch="stylegan9"))


def test_an_architecture_refuses_options_it_does_not_take() -> None:
    with pytest.raises(FaceganError, match="--mbstd-group applies to the dcgan discriminator only"):
        build_models(ModelConfig(size=32, ngf=4, ndf=4, arch="r3gan"), gan=GANConfig(mbstd_group=2))


def test_registering_a_name_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        register_architecture(ARCHITECTURES["dcgan"])
