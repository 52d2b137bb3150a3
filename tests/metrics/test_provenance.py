"""`facegan evaluate` says whether the held-out faces were unseen by the generator it measures
(facegan/metrics/provenance.py): from a checkpoint, a run's export, the shipped models' files, and any
export of those (facegan/sampling/provenance.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from facegan.cli.main import main
from facegan.data.dataset import PackedDataset
from facegan.data.prepare import prepare
from facegan.metrics.provenance import Provenance, heldout_unseen, provenance
from facegan.sampling.generate import load_generator
from facegan.sharing import pretrained

pytestmark = pytest.mark.usefixtures("one_thread", "short_embedding")
TINY = ["--size", "32", "--latent-dim", "16", "--ngf", "8", "--ndf", "8", "--batch-size", "16", "--quiet"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> PackedDataset:
    out = tmp_path_factory.mktemp("prov") / "synthetic"
    prepare("synthetic", out, size=32, synthetic_count=120, quiet=True)  # 12 held out
    return PackedDataset(out)


def trained(data: PackedDataset, runs: Path, *flags: str) -> Path:
    assert (
        main(["train", "--data", str(data.root), *TINY, "--steps", "1", "--outdir", str(runs), *flags]) == 0
    )
    (run,) = runs.iterdir()
    return run


def evaluated(generator: Path, data: PackedDataset, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    capsys.readouterr()
    args = ["evaluate", "--checkpoint", str(generator), "--data", str(data.root), "--metrics", "swd"]
    assert main([*args, "--num-fake", "12", "--device", "cpu"]) == 0
    report: dict[str, object] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return report


@pytest.mark.parametrize(("flags", "unseen"), [((), True), (("--train-on-heldout",), False)])
def test_evaluate_says_whether_the_heldout_faces_were_trained_on(
    data: PackedDataset,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flags: tuple[str, ...],
    unseen: bool,
) -> None:
    run = trained(data, tmp_path / "runs", *flags)
    copy = tmp_path / "copy.safetensors"  # `facegan export` of the checkpoint carries it on
    assert main(["export", "--checkpoint", str(run / "checkpoints" / "latest.pt"), "--out", str(copy)]) == 0
    for generator in (run / "checkpoints" / "latest.pt", run / "generator.safetensors", copy):
        assert provenance(load_generator(generator)) == Provenance(data.content_hash, not unseen)
        report = evaluated(generator, data, capsys)
        assert report["real_split"] == "heldout" and report["heldout_unseen"] is unseen, report


def test_other_data_or_an_unlabelled_file_is_not_called_unseen(data: PackedDataset) -> None:
    assert heldout_unseen(Provenance(), data)[0] is None
    assert heldout_unseen(Provenance("sha256:other", False), data)[0] is None
    assert heldout_unseen(Provenance(data.content_hash, None), data)[0] is None
    assert heldout_unseen(Provenance(data.content_hash, False), data)[0] is True


def test_shipped_models_say_what_they_trained_on() -> None:
    """celeba64 predates the split (it trained on all 6,000 faces), anime64 trained on its training
    split: the reports of their cards' commands must say so."""
    assert provenance(load_generator(pretrained.path("celeba64"))).heldout_included is True
    assert provenance(load_generator(pretrained.path("anime64"))).heldout_included is False
    for name in ("celeba64", "anime64"):
        assert str(provenance(load_generator(pretrained.path(name))).dataset_hash).startswith("sha256:")


@pytest.mark.parametrize("fmt", ["safetensors", "hub"])
def test_an_export_of_a_shipped_model_says_what_it_trained_on(tmp_path: Path, fmt: str) -> None:
    """A copy made by `facegan export` is read from its own metadata (the shipped folder's training file
    is read only for the shipped weights), so the export must carry it: else the copy says "not known"."""
    out = tmp_path / ("celeba64.safetensors" if fmt == "safetensors" else "celeba64-hub")
    assert main(["export", "--pretrained", "celeba64", "--out", str(out), "--format", fmt]) == 0
    shipped = provenance(load_generator(pretrained.path("celeba64")))
    assert provenance(load_generator(out)) == shipped == Provenance(shipped.dataset_hash, True)


@pytest.mark.parametrize("schema", [1, 2])
def test_a_checkpoint_from_before_the_split_trained_on_every_image(
    data: PackedDataset, tmp_path: Path, capsys: pytest.CaptureFixture[str], schema: int
) -> None:
    """A checkpoint written before `train_on_heldout` existed (schema 1, or schema 2 before the split
    came) trained on all images: it must not be reported as unseen by the held-out faces."""
    import torch

    from facegan.networks.checkpoint import checkpoint_config

    run = trained(data, tmp_path / "runs")
    ckpt = torch.load(run / "checkpoints" / "latest.pt", weights_only=False)
    del ckpt["config"]["train"]["train_on_heldout"]
    if schema == 1:
        del ckpt["config_schema"], ckpt["facegan_version"]
    old = tmp_path / "old.pt"
    torch.save(ckpt, old)
    assert checkpoint_config(torch.load(old, weights_only=False)).train.train_on_heldout is True
    assert provenance(load_generator(old)) == Provenance(data.content_hash, True)
    assert evaluated(old, data, capsys)["heldout_unseen"] is False
