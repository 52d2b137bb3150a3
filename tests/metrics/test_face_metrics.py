"""The held-out split, the trained face embedding (PRDC that blur cannot game), `evaluate --fakes` and
the memorisation check (`evaluate --nearest`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from facegan.data.dataset import BatchSource, PackedDataset
from facegan.data.prepare import prepare
from facegan.data.synthetic import synthetic_face
from facegan.errors import FaceganError
from facegan.metrics import evaluate
from facegan.metrics import reference as reference_mod
from facegan.metrics.embedding import load_embedding, save_embedding, train_embedding

SIZE = 32


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """One thread, a private cache, and short embedding training (the default takes minutes)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("FACEGAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(reference_mod, "EMBEDDING_STEPS", 40)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def split_data(tmp_path_factory: pytest.TempPathFactory) -> PackedDataset:
    out = tmp_path_factory.mktemp("split") / "synthetic"
    prepare("synthetic", out, size=SIZE, synthetic_count=300, quiet=True)
    return PackedDataset(out)


# ----------------------------------------------------------------------------- the held-out split


def test_prepare_holds_out_a_seeded_split_that_training_skips(split_data: PackedDataset) -> None:
    split = split_data.manifest["split"]
    assert split["heldout_count"] == 30 and split["seed"] == 0 and len(split["heldout"]) == 30
    held = set(split_data.heldout_rows.tolist())
    src = BatchSource(split_data, 30, seed=0, device=torch.device("cpu"))
    assert src.steps_per_epoch == 9  # 270 training images
    src.batch(0)  # loads epoch 0's order
    seen = set(src._order.numpy().tolist())
    assert not seen & held and len(seen) == 270
    everything = BatchSource(split_data, 30, seed=0, device=torch.device("cpu"), include_heldout=True)
    assert everything.steps_per_epoch == 10


def test_old_datasets_without_split_train_and_measure_all(prepared: Path) -> None:
    """A dataset prepared before splits (no "split" in its manifest) trains on every image as before,
    and evaluate measures against all of them, saying so."""
    manifest = json.loads((prepared / "manifest.json").read_text())
    manifest.pop("split", None)
    (prepared / "manifest.json").write_text(json.dumps(manifest))
    ds = PackedDataset(prepared)
    assert not ds.has_split and len(ds.train_rows) == len(ds)
    assert reference_mod.reference(ds).split == "all"
    with pytest.raises(FaceganError, match="no held-out split"):
        reference_mod.reference(ds, "heldout")
    fakes = np.asarray(ds.images[:20])
    out = evaluate(fakes, ds, ["swd"])
    assert out["real_heldout"] == 0.0 and out["swd_real_n"] == 20 and out["num_fake"] == 20


def test_metrics_use_the_heldout_split(split_data: PackedDataset) -> None:
    """By default every metric compares with the 30 held-out faces: fakes that *are* those faces
    score SWD 0 and C2ST at chance; the training split is another set (SWD > 0)."""
    held = np.asarray(split_data.images[split_data.heldout_rows])
    out = evaluate(held, split_data, ["swd"])
    assert out["real_heldout"] == 1.0 and out["swd_real_n"] == 30 and out["swd"] == pytest.approx(0, abs=1e-6)
    other = evaluate(held, split_data, ["swd"], real_split="train")
    assert other["real_heldout"] == 0.0 and other["swd"] > 1.0


# ----------------------------------------------------------------------------- memorisation


def test_nearest_flags_a_generator_that_copies_training_faces(
    split_data: PackedDataset, tmp_path: Path
) -> None:
    """Fakes that are training faces are flagged; new faces of the same distribution are not."""
    from facegan.metrics.nearest import nearest_check

    emb = train_embedding(np.asarray(split_data.images[split_data.train_rows]), steps=20, batch_size=64)
    copies = np.asarray(split_data.images[split_data.train_rows[:40]])
    fresh = np.stack([synthetic_face(i, SIZE).transpose(2, 0, 1) for i in range(5000, 5040)])
    bad = nearest_check(copies, split_data, emb, tmp_path / "bad")
    good = nearest_check(fresh, split_data, emb, tmp_path / "good")
    assert bad["nearest_flagged"] == 1.0 and bad["nearest_copies"] == 1.0, bad
    assert good["nearest_flagged"] == 0.0 and good["nearest_copies"] <= 0.05, good
    record = json.loads((tmp_path / "bad" / "nearest.json").read_text())
    assert len(record["fakes"]) == 40 and record["fakes"][0]["train_distance"] < 1e-5
    assert (tmp_path / "bad" / "nearest.png").is_file()


# ----------------------------------------------------------------------------- diversity


def test_close_pairs_flag_a_generator_that_repeats_faces(split_data: PackedDataset) -> None:
    """Fakes drawn like the reals score a close-pair ratio near 1; a generator that draws 8 faces
    over and over (each slightly perturbed) scores many times more close pairs, through `evaluate`."""
    from facegan.metrics.close_pairs import close_pairs

    rng = np.random.default_rng(0)
    real, alike = rng.normal(size=(300, 16)), rng.normal(size=(300, 16))
    repeats = rng.normal(size=(8, 16))[rng.integers(0, 8, 300)] + 0.05 * rng.normal(size=(300, 16))
    fair, collapsed = close_pairs(real, alike), close_pairs(real, repeats)
    assert fair["close_pairs_real"] == pytest.approx(0.01, abs=1e-3)
    assert 0.5 < fair["close_pairs_ratio"] < 2.0, fair
    assert collapsed["close_pairs_ratio"] > 5.0, collapsed
    # Through evaluate, in the trained face embedding: 4 training faces repeated vs 30 held-out reals.
    emb = train_embedding(np.asarray(split_data.images[split_data.train_rows]), steps=20, batch_size=64)
    four = np.asarray(split_data.images[split_data.train_rows[:4]])
    out = evaluate(np.concatenate([four] * 8), split_data, ["prdc"], embedding=emb)
    assert out["prdc_close_pairs_ratio"] > 5.0, out


def test_embedding_saves_and_loads(tmp_path: Path) -> None:
    emb = train_embedding(np.stack([synthetic_face(i, SIZE).transpose(2, 0, 1) for i in range(16)]), steps=1)
    back = load_embedding(save_embedding(emb, tmp_path / "e.safetensors"))
    assert back.extractor_id == emb.extractor_id
    (tmp_path / "bad.safetensors").write_bytes(b"nope")
    with pytest.raises(FaceganError, match="cannot load the face embedding"):
        load_embedding(tmp_path / "bad.safetensors")
