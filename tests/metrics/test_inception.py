"""The FID Inception weights (facegan/metrics/inception.py): found offline, never downloaded."""

from __future__ import annotations

import time
from pathlib import Path
from unittest import mock

import pytest
import torch

from facegan.data.dataset import PackedDataset
from facegan.errors import FaceganError
from facegan.metrics import (
    WEIGHTS_ENV,
    WEIGHTS_FILE,
    WEIGHTS_URL,
    evaluate,
    inception_extractor,
    resolve_weights,
)
from facegan.metrics.inception import FIDELITY_WEIGHTS_FILE, INCEPTION_ID
from tests.metrics.helpers import SIZE, faces_u8, run_with_timeout, tiny_generator

pytestmark = pytest.mark.usefixtures("one_thread", "short_embedding")


# ----------------------------------------------------------------------------- Inception weights


def test_missing_weights_fail_fast_without_download(offline: Path) -> None:
    start = time.monotonic()
    with pytest.raises(FaceganError) as info:
        run_with_timeout(lambda: inception_extractor(None), timeout=20)
    message = str(info.value)
    assert WEIGHTS_FILE in message and WEIGHTS_URL in message
    assert "--inception-weights" in message and WEIGHTS_ENV in message
    assert "\n" not in message
    assert time.monotonic() - start < 20


def test_evaluate_without_weights_fails_before_any_work(offline: Path, dataset: PackedDataset) -> None:
    g = tiny_generator()
    with mock.patch("facegan.metrics.measurement.faces") as faces:
        with pytest.raises(FaceganError, match=WEIGHTS_FILE):
            run_with_timeout(lambda: evaluate(g, dataset, ["fid2k"], cache_dir=offline), timeout=20)
        faces.assert_not_called()


def test_explicit_weights_path_must_exist(offline: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FaceganError, match=r"--inception-weights .*is not a file"):
        resolve_weights(offline / "nope.pth")
    monkeypatch.setenv(WEIGHTS_ENV, str(offline / "nope.pth"))
    with pytest.raises(FaceganError, match=WEIGHTS_ENV):
        resolve_weights(None)


def test_wrong_weights_files_are_clear_errors(offline: Path) -> None:
    text = offline / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(FaceganError, match="cannot read Inception weights"):
        inception_extractor(text)
    other = offline / "other.pth"
    torch.save({"layer.weight": torch.zeros(2)}, other)
    with pytest.raises(FaceganError, match="not the FID Inception weights"):
        inception_extractor(other)
    partial = offline / "partial.pth"
    torch.save({"Mixed_7c.branch_pool.conv.weight": torch.zeros(2)}, partial)
    with pytest.raises(FaceganError, match="does not fit"):
        inception_extractor(partial)


def test_weights_found_via_env_and_hub_cache(
    offline: Path, monkeypatch: pytest.MonkeyPatch, random_inception_weights: Path
) -> None:
    monkeypatch.setenv(WEIGHTS_ENV, str(random_inception_weights))
    assert resolve_weights() == random_inception_weights
    monkeypatch.delenv(WEIGHTS_ENV)
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    hub.mkdir(parents=True)
    (hub / FIDELITY_WEIGHTS_FILE).symlink_to(random_inception_weights)
    assert resolve_weights() == hub / FIDELITY_WEIGHTS_FILE


def test_inception_extractor_runs_offline(offline: Path, random_inception_weights: Path) -> None:
    ext = inception_extractor(random_inception_weights)
    assert ext.extractor_id == INCEPTION_ID
    feats = ext(torch.from_numpy(faces_u8(0, 2)))
    assert feats.shape == (2, 2048) and feats.dtype == torch.float32
    assert torch.isfinite(feats).all()
    with pytest.raises(ValueError, match="uint8"):
        ext(torch.zeros(1, 3, SIZE, SIZE))
