"""Checkpoints: atomic, safe to load, clear about what is wrong, and complete for resuming."""

from __future__ import annotations

import errno
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from facegan.checkpoint import (
    atomic_save,
    capture_rng,
    export_generator,
    list_checkpoints,
    load_checkpoint,
    read_exported,
    restore_rng,
    save_checkpoint,
)
from facegan.config import ModelConfig, RunConfig
from facegan.errors import FaceganError
from facegan.generate import load_generator
from facegan.models import build_models

SMALL = ModelConfig(size=32, latent_dim=16, ngf=8, ndf=8)


def _state(cfg: ModelConfig = SMALL) -> dict:
    g, d = build_models(cfg)
    return {"config": RunConfig(model=cfg).to_dict(), "step": 1, "G": g.state_dict(), "D": d.state_dict()}


def test_keeps_last_k_and_latest(tmp_path: Path) -> None:
    for step in (10, 20, 30, 40):
        save_checkpoint(tmp_path, {**_state(), "step": step}, step, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-00000030.pt", "ckpt-00000040.pt"]
    assert load_checkpoint(tmp_path / "latest.pt")["step"] == 40
    assert not list(tmp_path.glob(".*tmp*"))


def test_failed_write_keeps_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    atomic_save({"format": "facegan-checkpoint", "step": 1}, path)
    before = path.read_bytes()

    def disk_full(obj: object, fh: object) -> None:
        fh.write(b"partial bytes")  # type: ignore[attr-defined]
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(FaceganError, match=r"No space left on device.*previous checkpoint is intact"):
        atomic_save({"step": 2}, path, writer=disk_full)
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_loading_never_runs_code(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple:
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"format": "facegan-checkpoint", "x": Evil()}, fh)
    with pytest.raises(FaceganError, match="not a readable facegan checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b"", b"hello world", b"PK\x03\x04garbage"])
def test_non_checkpoint_files_give_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    with pytest.raises(FaceganError, match="not a readable facegan checkpoint"):
        load_checkpoint(path)


def test_foreign_torch_file_is_rejected(tmp_path: Path) -> None:
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(FaceganError, match="not a facegan checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(FaceganError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_architecture_mismatch_is_one_line(tmp_path: Path) -> None:
    state = _state()
    state["config"] = RunConfig(model=ModelConfig(size=32, latent_dim=16, ngf=16, ndf=8)).to_dict()
    save_checkpoint(tmp_path, state, 1, keep=1)
    with pytest.raises(FaceganError, match="do not fit this architecture") as err:
        load_generator(tmp_path / "latest.pt")
    assert "\n" not in str(err.value)


def test_rng_state_round_trips() -> None:
    step_rng = torch.Generator().manual_seed(3)
    state = capture_rng(step_rng)
    def draw() -> tuple[float, ...]:
        return (random.random(), np.random.rand(), torch.rand(1).item(),
                torch.rand(1, generator=step_rng).item())

    draws = draw()
    restore_rng(state, step_rng)
    assert draw() == draws


def test_rng_state_survives_weights_only_save(tmp_path: Path) -> None:
    step_rng = torch.Generator().manual_seed(3)
    atomic_save({"format": "facegan-checkpoint", "rng": capture_rng(step_rng)}, tmp_path / "c.pt")
    loaded = load_checkpoint(tmp_path / "c.pt")
    expected = random.random()
    random.random()
    restore_rng(loaded["rng"], step_rng)
    assert random.random() == expected


def test_exported_generator_round_trips(tmp_path: Path) -> None:
    g, _ = build_models(SMALL, seed=2)
    path = export_generator(g, SMALL, tmp_path / "g.safetensors")
    cfg, tensors = read_exported(path)
    assert cfg == SMALL
    assert all(torch.equal(tensors[k], v) for k, v in g.state_dict().items())
    with pytest.raises(FaceganError, match=r"must end in \.safetensors"):
        export_generator(g, SMALL, tmp_path / "g.pt")


def test_non_safetensors_export_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "bad.safetensors").write_bytes(b"nonsense")
    with pytest.raises(FaceganError, match="not a readable safetensors"):
        load_generator(tmp_path / "bad.safetensors")
