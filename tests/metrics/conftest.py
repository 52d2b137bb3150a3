"""Fixtures of the metrics tests: one thread, a short embedding, no Inception weights, a small dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import torch

from facegan.data.dataset import PackedDataset
from facegan.data.prepare import prepare
from facegan.metrics import WEIGHTS_ENV
from tests.metrics.helpers import SIZE


@pytest.fixture(scope="module")
def one_thread() -> Any:
    """These small workloads run fastest on one thread, and a busy CI machine makes several
    threads spin against each other (10-100x slower); restore the setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def short_embedding(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """PRDC trains a face embedding on first use (minutes at the default length): a private cache and
    a few steps here, where only the wiring is tested."""
    from facegan.metrics import reference

    monkeypatch.setenv("FACEGAN_CACHE", str(tmp_path / "facegan-cache"))
    monkeypatch.setattr(reference, "EMBEDDING_STEPS", 5)


def _no_download(*args: object, **kwargs: object) -> None:
    raise AssertionError("a download of the Inception weights was attempted")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No weights anywhere: empty torch hub, no env var; any download attempt raises at once."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _no_download)
    try:
        import torch_fidelity.feature_extractor_inceptionv3 as tf_inception
    except ImportError:
        pass
    else:
        monkeypatch.setattr(tf_inception, "load_state_dict_from_url", _no_download)
    return tmp_path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> PackedDataset:
    out = tmp_path_factory.mktemp("data") / "synthetic32"
    prepare("synthetic", out, size=SIZE, synthetic_count=160, quiet=True)
    return PackedDataset(out)


@pytest.fixture(scope="module")
def random_inception_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state dict with the FID Inception's keys and shapes but random values (no download)."""
    tf_inception = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")

    cls = tf_inception.FeatureExtractorInceptionV3
    with (
        mock.patch.object(tf_inception, "load_state_dict_from_url", lambda *a, **k: {}),
        mock.patch.object(cls, "load_state_dict", lambda self, state: None),
    ):
        net = cls("inception-v3-compat", ["2048"])
    path = tmp_path_factory.mktemp("weights") / "random-inception.pth"
    torch.save(net.state_dict(), path)
    return path
