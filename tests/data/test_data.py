"""Opening prepared datasets and drawing training batches from them (facegan.data.dataset)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from facegan.data.dataset import BatchSource, PackedDataset, resolve_dataset
from facegan.errors import FaceganError


def test_resolve_dataset_caches_and_checks_size(image_folder: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    ds = resolve_dataset(str(image_folder), 32, cache_dir=cache, quiet=True)
    again = resolve_dataset(str(image_folder), 32, cache_dir=cache, quiet=True)
    assert ds.root == again.root
    # one entry, plus its lock file; no build folder left behind
    assert sorted(p.name for p in cache.iterdir()) == [f".{ds.root.name}.lock", ds.root.name]
    with pytest.raises(FaceganError, match="prepared at 32px"):
        resolve_dataset(str(ds.root), 64, quiet=True)


def test_batches_cover_each_epoch_once_and_are_resumable(prepared: Path) -> None:
    ds = PackedDataset(prepared)
    src = BatchSource(ds, 16, seed=3, device=torch.device("cpu"))
    assert src.steps_per_epoch == 4
    epoch0 = torch.cat([src.batch(s) for s in range(4)])
    assert epoch0.shape == (64, 3, 32, 32)
    assert epoch0.min() >= -1.0 and epoch0.max() <= 1.0
    # every image exactly once per epoch
    all_imgs = torch.from_numpy(np.array(ds.images)).float().div(127.5).sub(1)
    assert torch.allclose(epoch0.sum(0), all_imgs.sum(0), atol=1e-3)
    # a fresh source (as after a resume) gives the same batch for the same step
    assert torch.equal(BatchSource(ds, 16, 3, torch.device("cpu")).batch(6), src.batch(6))
    assert not torch.equal(src.batch(0), src.batch(4))  # epochs are reshuffled


def test_batch_larger_than_dataset(prepared: Path) -> None:
    with pytest.raises(FaceganError, match="larger than the dataset"):
        BatchSource(PackedDataset(prepared), 128, 0, torch.device("cpu"))
