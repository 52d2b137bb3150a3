"""Fixtures of the edit tests: tiny generators with and without an edits file."""

from __future__ import annotations

from pathlib import Path

import pytest

from facegan.config.schema import ModelConfig
from facegan.networks.checkpoint import export_generator
from facegan.networks.factory import build_models
from facegan.sampling.directions import sidecar
from tests.edits.helpers import tiny_directions


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """A 32 px generator (latent 16) exported with an edits file beside it."""
    g, _ = build_models(ModelConfig(size=32, latent_dim=16, ngf=8, ndf=8), seed=3)
    path = export_generator(g, g.cfg, tmp_path / "tiny.safetensors")
    tiny_directions().save(sidecar(path))
    return path


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    g, _ = build_models(ModelConfig(size=32, latent_dim=16, ngf=8, ndf=8), seed=4)
    return export_generator(g, g.cfg, tmp_path / "bare.safetensors")
