"""The Hugging Face Hub layout: `facegan export --format hub` writes config.json, model.safetensors and a
README.md model card with the Hub's metadata header; generate, serve, facegan.load and
Generator.from_pretrained read the folder back. All local: no network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from facegan.cli.main import main

TINY = [
    "--size",
    "32",
    "--latent-dim",
    "16",
    "--ngf",
    "8",
    "--ndf",
    "8",
    "--batch-size",
    "16",
    "--device",
    "cpu",
    "--quiet",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-step run with one evaluation, so the model card has measured metrics to show."""
    root = tmp_path_factory.mktemp("hubrun")
    argv = [
        "train",
        "--synthetic-count",
        "32",
        *TINY,
        "--steps",
        "2",
        "--eval-every",
        "2",
        "--eval-metrics",
        "swd",
        "--eval-num-fake",
        "64",
        "--sample-every",
        "2",
        "--outdir",
        str(root / "runs"),
    ]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACEGAN_CACHE", str(root / "cache"))
        assert main(argv) == 0
    (run,) = (root / "runs").iterdir()
    return run


@pytest.fixture(scope="module")
def hub_dir(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "tiny-hub"
    assert (
        main(
            [
                "export",
                "--checkpoint",
                str(run_dir),
                "--format",
                "hub",
                "--out",
                str(out),
                "--license",
                "mit",
                "--dataset",
                "huggan/CelebA-faces",
            ]
        )
        == 0
    )
    return out


def test_layout_and_model_card_metadata(hub_dir: Path) -> None:
    from huggingface_hub import ModelCard

    files = {p.name for p in hub_dir.iterdir()}
    assert files == {"config.json", "model.safetensors", "README.md", "samples.png"}
    config = json.loads((hub_dir / "config.json").read_text())
    assert config["library_name"] == "facegan" and config["size"] == 32 and config["latent_dim"] == 16
    card = ModelCard.load(hub_dir / "README.md")  # huggingface_hub's own parser of the metadata header
    data = card.data.to_dict()
    assert data["library_name"] == "facegan" and data["license"] == "mit"
    assert data["datasets"] == ["huggan/CelebA-faces"] and data["metrics"] == ["swd"]
    assert {"facegan", "gan", "unconditional-image-generation"} <= set(data["tags"])
    assert data["pipeline_tag"] == "unconditional-image-generation"
    assert "| swd |" in card.text and "![samples](samples.png)" in card.text


def test_generate_reads_the_folder_with_the_run_s_pixels(
    hub_dir: Path, run_dir: Path, tmp_path: Path
) -> None:
    from PIL import Image

    for source, out in (
        (hub_dir, tmp_path / "hub.png"),
        (run_dir / "generator.safetensors", tmp_path / "run.png"),
    ):
        assert (
            main(
                ["generate", "--checkpoint", str(source), "--seed", "0-3", "--amp", "off", "--out", str(out)]
            )
            == 0
        )
    assert Image.open(tmp_path / "hub.png").tobytes() == Image.open(tmp_path / "run.png").tobytes()


def test_from_pretrained_and_load_read_the_local_folder(
    hub_dir: Path, run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import facegan
    from facegan.sampling.generate import faces, load_generator

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a local folder must never touch the network
    want = faces(load_generator(run_dir / "generator.safetensors"), [0, 1, 2])
    g = facegan.Generator.from_pretrained(hub_dir, amp="off")
    assert torch.equal(g.generate(seeds=[0, 1, 2], output="tensor"), want)
    assert torch.equal(facegan.load(hub_dir, amp="off").generate(seeds=[0, 1, 2], output="tensor"), want)


def test_serve_serves_the_folder(hub_dir: Path) -> None:
    from fastapi.testclient import TestClient

    from facegan.sampling.generate import load_generator
    from facegan.serve.app import build_app
    from facegan.serve.config import ServeConfig

    sources = ServeConfig(checkpoint=(str(hub_dir),)).sources()
    assert sources == {"tiny-hub": str(hub_dir)}
    app = build_app({name: load_generator(path) for name, path in sources.items()}, sources=sources)
    with TestClient(app) as client:
        reply = client.get("/api/face.png?seed=3&model=tiny-hub")
    assert reply.status_code == 200 and reply.content.startswith(b"\x89PNG")


def test_shipped_generator_exports_with_its_own_card(tmp_path: Path) -> None:
    from huggingface_hub import ModelCard

    assert main(["export", "--pretrained", "celeba64", "--format", "hub", "--out", str(tmp_path / "c")]) == 0
    card = ModelCard.load(tmp_path / "c" / "README.md")
    assert card.data.license == "other" and card.data.license_name == "celeba-non-commercial-research"
    assert card.data.datasets == ["huggan/CelebA-faces"]
    assert "non-commercial research only" in card.text and (tmp_path / "c" / "samples.png").is_file()


def test_the_display_truncation_round_trips_through_the_hub_layout(
    hub_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shipped model's display truncation goes into config.json and model.safetensors, and comes back
    through from_pretrained, facegan.load and a second export; a run's model has none (full)."""
    import facegan
    from facegan.sampling.generate import load_generator

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    shipped = facegan.load("celeba64").display_truncation
    assert shipped is not None  # measured for it (facegan/pretrained_models/celeba64.display.yaml)
    first, second = tmp_path / "a", tmp_path / "b"
    assert main(["export", "--pretrained", "celeba64", "--format", "hub", "--out", str(first)]) == 0
    assert json.loads((first / "config.json").read_text())["display_truncation"] == shipped
    g = facegan.Generator.from_pretrained(first)
    assert g.display_truncation == shipped and facegan.load(first).display_truncation == shipped
    g.save_pretrained(second)
    assert load_generator(second).display_truncation == shipped
    assert json.loads((second / "config.json").read_text())["display_truncation"] == shipped
    # a model that never stored one: no key, the full distribution
    assert "display_truncation" not in json.loads((hub_dir / "config.json").read_text())
    assert facegan.Generator.from_pretrained(hub_dir).display_truncation is None


def test_a_folder_with_other_files_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    assert main(["export", "--pretrained", "celeba64", "--format", "hub", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "other files" in err
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


def test_re_export_replaces_the_card(tmp_path: Path) -> None:
    out = tmp_path / "m"
    assert main(["export", "--pretrained", "anime64", "--format", "hub", "--out", str(out)]) == 0
    assert main(["export", "--pretrained", "celeba64", "--format", "hub", "--out", str(out)]) == 0
    assert "celeba64" in (out / "README.md").read_text()


def test_an_unreachable_repo_id_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    import facegan
    from facegan.errors import FaceganError

    # What a machine without network sees, at once (huggingface_hub reads the variable on import).
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(FaceganError, match="could not get Hub repo 'nobody/no-such-gan'"):
        facegan.load("hf:nobody/no-such-gan")


def test_a_hub_id_brings_the_model_s_edits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`facegan.load("hf:owner/name")` fetches edits.safetensors with the weights, so a shared model's
    edits work from the Hub id. No network: a stand-in for hf_hub_download copies only the file asked
    for from a folder playing the remote repo into a snapshot folder, as a download does."""
    import shutil

    from huggingface_hub.errors import EntryNotFoundError

    import facegan
    from facegan.sharing import hub

    remote = tmp_path / "remote"
    assert main(["export", "--pretrained", "celeba64", "--format", "hub", "--out", str(remote)]) == 0
    assert (remote / "edits.safetensors").is_file()
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()

    def download(repo_id: str, filename: str, **_: object) -> str:
        assert repo_id == "someone/celeba64"
        if not (remote / filename).is_file():
            raise EntryNotFoundError(f"{filename} is not in {repo_id}")
        return shutil.copyfile(remote / filename, snapshot / filename)

    monkeypatch.setattr(hub, "hf_hub_download", download)
    monkeypatch.setattr("huggingface_hub.hub_mixin.hf_hub_download", download)
    g = facegan.load("hf:someone/celeba64")
    assert "Smiling" in g.edits and len(g.edits) >= 8
    smiling = g.generate(seeds=[0], edit={"Smiling": 1.0}, output="tensor")
    assert not torch.equal(smiling, g.generate(seeds=[0], output="tensor"))
    # A repo without edits still loads, with none.
    for path in (remote / "edits.safetensors", snapshot / "edits.safetensors"):
        path.unlink()
    assert facegan.load("hf:someone/celeba64").edits == []
