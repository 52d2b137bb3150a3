"""Checkpoints: atomic, safe to load, clear about what is wrong, and complete for resuming."""

from __future__ import annotations

import errno
import os
import random
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pytest
import torch
from safetensors import SafetensorError

from facegan.config.schema import ModelConfig, RunConfig
from facegan.errors import FaceganError
from facegan.networks.checkpoint import (
    atomic_save,
    capture_rng,
    export_generator,
    list_checkpoints,
    load_checkpoint,
    read_exported,
    restore_rng,
    save_checkpoint,
)
from facegan.networks.factory import build_models
from facegan.sampling.generate import load_generator

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


def _partial_then(err: Exception) -> Callable[[object, BinaryIO], None]:
    """A writer that gets part of the file out, then fails like a full disk does."""

    def writer(obj: object, fh: BinaryIO) -> None:
        fh.write(b"partial bytes")
        raise err

    return writer


WRITE_FAILURES = [
    pytest.param(OSError(errno.ENOSPC, "No space left on device"), "No space left on device", id="ENOSPC"),
    # what torch.save raises when the disk fills up
    pytest.param(
        RuntimeError(
            "[enforce fail at inline_container.cc:783] . PytorchStreamWriter failed "
            "writing file data/0: file write failed"
        ),
        "PytorchStreamWriter failed",
        id="RuntimeError",
    ),
    pytest.param(
        SafetensorError("Error while serializing: IoError(No space left on device)"),
        "Error while serializing",
        id="SafetensorError",
    ),
]


@pytest.mark.parametrize("err,reason", WRITE_FAILURES)
def test_failed_write_keeps_previous_checkpoint(tmp_path: Path, err: Exception, reason: str) -> None:
    path = tmp_path / "ckpt.pt"
    atomic_save({"format": "facegan-checkpoint", "step": 1}, path)
    before = path.read_bytes()
    with pytest.raises(FaceganError, match=r"could not write .*previous checkpoint is intact") as exc:
        atomic_save({"step": 2}, path, writer=_partial_then(err))
    assert reason in str(exc.value) and "\n" not in str(exc.value)
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


@pytest.mark.parametrize("err,reason", WRITE_FAILURES)
def test_any_failed_checkpoint_write_is_one_line_and_keeps_the_old_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err: Exception, reason: str
) -> None:
    save_checkpoint(tmp_path, _state(), 10, keep=3)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    monkeypatch.setattr(torch, "save", _partial_then(err))
    with pytest.raises(FaceganError, match="previous checkpoint is intact") as exc:
        save_checkpoint(tmp_path, _state(), 10, keep=3)  # overwrite the same step: the worst case
    assert reason in str(exc.value) and "\n" not in str(exc.value)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temp file, nothing changed


@pytest.mark.parametrize("err,reason", WRITE_FAILURES)
def test_any_failed_export_is_one_line_and_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err: Exception, reason: str
) -> None:
    g, _ = build_models(SMALL, seed=2)
    path = export_generator(g, SMALL, tmp_path / "g.safetensors")
    before = path.read_bytes()

    def failing_save_file(tensors: dict, filename: str, metadata: dict | None = None) -> None:
        Path(filename).write_bytes(b"partial bytes")
        raise err

    monkeypatch.setattr("facegan.networks.checkpoint.save_file", failing_save_file)
    with pytest.raises(FaceganError, match=r"could not write .*g\.safetensors") as exc:
        export_generator(build_models(SMALL, seed=3)[0], SMALL, path)
    assert reason in str(exc.value) and "\n" not in str(exc.value)
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


def test_unwritable_export_folder_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_bytes(b"")
    with pytest.raises(FaceganError, match="could not write"):
        export_generator(build_models(SMALL)[0], SMALL, tmp_path / "a-file" / "g.safetensors")


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077], ids=oct)
def test_written_files_respect_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        export = export_generator(build_models(SMALL)[0], SMALL, tmp_path / "g.safetensors")
        ckpt = save_checkpoint(tmp_path / "checkpoints", _state(), 1, keep=1)
    finally:
        os.umask(old)
    for path in (export, ckpt, tmp_path / "checkpoints" / "latest.pt"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path.name


def test_pruning_follows_write_order_not_step(tmp_path: Path) -> None:
    """Resuming from an older checkpoint must keep what it writes now, not the abandoned newer ones."""
    for step in (10, 20, 30, 40):
        save_checkpoint(tmp_path, {**_state(), "step": step}, step, keep=3)
    # resumed from ckpt-20: the next save is step 25
    save_checkpoint(tmp_path, {**_state(), "step": 25}, 25, keep=3)
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "ckpt-00000030.pt",
        "ckpt-00000040.pt",
        "ckpt-00000025.pt",
    ]
    save_checkpoint(tmp_path, {**_state(), "step": 26}, 26, keep=1)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-00000026.pt"]
    assert load_checkpoint(tmp_path / "latest.pt")["step"] == 26


class Evil:
    """Unpickling this runs os.mkdir: a visible side effect that a weights-only load never allows."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[[str], None], tuple[str]]:
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize("loader", [load_checkpoint, load_generator], ids=lambda f: f.__name__)
def test_loading_never_runs_code(tmp_path: Path, loader: Callable[[Path], object]) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    torch.save({**_state(), "format": "facegan-checkpoint", "x": Evil(marker)}, path)
    with pytest.raises(FaceganError, match="not a readable facegan checkpoint"):
        try:
            loader(path)
        finally:  # checked first: a loader that runs the payload usually accepts the file too
            assert not marker.exists(), "loading the checkpoint ran code from it"


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
        return (
            random.random(),
            np.random.rand(),
            torch.rand(1).item(),
            torch.rand(1, generator=step_rng).item(),
        )

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


def test_half_export_is_half_the_file_and_draws_the_same_faces(tmp_path: Path) -> None:
    """`facegan export --half` (for size limits such as the shipped ≤ 10 MB files): float16 storage,
    integer buffers untouched, and it loads into the float32 model drawing the same faces to within
    float16 rounding."""
    g, _ = build_models(SMALL, seed=2)
    g.eval()
    full = export_generator(g, SMALL, tmp_path / "g.safetensors")
    half = export_generator(g, SMALL, tmp_path / "g16.safetensors", half=True)
    assert half.stat().st_size < 0.55 * full.stat().st_size
    _, tensors = read_exported(half)
    for k, v in g.state_dict().items():
        assert tensors[k].dtype == (torch.float16 if v.is_floating_point() else v.dtype), k
    loaded = load_generator(half)
    assert next(loaded.parameters()).dtype == torch.float32
    z = torch.randn(8, SMALL.latent_dim, 1, 1, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = g(z), loaded(z)
    assert not torch.equal(a, b)  # the weights really were rounded
    assert (a - b).abs().max() < 2e-2


def test_non_safetensors_export_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "bad.safetensors").write_bytes(b"nonsense")
    with pytest.raises(FaceganError, match="not a readable safetensors"):
        load_generator(tmp_path / "bad.safetensors")


# ----------------------------------------------------------------------------- versions and migration

# Saved by facegan 0.1.0 (config schema 2) with: facegan train --data synthetic --synthetic-count 16
# --size 32 --ngf 4 --ndf 4 --latent-dim 8 --batch-size 8 --steps 2 --num-samples 4 --device cpu
# --amp off --ema-kimg 1. Committed so every later version proves it still reads it.
FIXTURE = Path(__file__).parents[1] / "fixtures" / "ckpt-v0.1.0-schema2.pt"


def test_checkpoints_record_facegan_version_and_config_schema(tmp_path: Path) -> None:
    from facegan import __version__
    from facegan.config.schema import CONFIG_SCHEMA

    ckpt = load_checkpoint(save_checkpoint(tmp_path, _state(), 1, keep=1))
    assert ckpt["facegan_version"] == __version__ and ckpt["config_schema"] == CONFIG_SCHEMA


def test_committed_checkpoint_still_loads() -> None:
    from facegan.networks.checkpoint import checkpoint_config

    assert FIXTURE.stat().st_size < 200_000
    ckpt = load_checkpoint(FIXTURE)
    assert (ckpt["facegan_version"], ckpt["config_schema"], ckpt["step"]) == ("0.1.0", 2, 2)
    cfg = checkpoint_config(ckpt)
    assert cfg.model == ModelConfig(size=32, latent_dim=8, ngf=4, ndf=4)
    assert (cfg.train.steps, cfg.perf.amp, cfg.gan.ema_kimg) == (2, "off", 1.0)
    g = load_generator(FIXTURE)
    with torch.no_grad():
        faces = g(torch.randn(2, 8, 1, 1))
    assert faces.shape == (2, 3, 32, 32) and torch.isfinite(faces).all()


def test_committed_checkpoint_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from facegan.cli.main import main

    monkeypatch.setenv("FACEGAN_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "runs" / "00000-synthetic-dcgan32"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(FIXTURE, run / "checkpoints" / "latest.pt")
    assert main(["train", "--resume", str(run), "--steps", "3", "--quiet"]) == 0
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["step"] == 3


def test_schema1_checkpoint_is_migrated_on_load(tmp_path: Path) -> None:
    """A checkpoint from before the schema was recorded: no version fields, no arch/r2_gamma/perf."""
    from facegan.networks.checkpoint import checkpoint_config

    ckpt = load_checkpoint(FIXTURE)
    del ckpt["config_schema"], ckpt["facegan_version"]
    raw = ckpt["config"]
    del raw["model"]["arch"], raw["gan"]["r2_gamma"], raw["perf"]
    atomic_save(ckpt, tmp_path / "old.pt")
    cfg = checkpoint_config(load_checkpoint(tmp_path / "old.pt"))
    assert cfg.model.arch == "dcgan" and cfg.gan.r2_gamma == 0.0 and cfg.perf.fused_adam == "off"
    assert load_generator(tmp_path / "old.pt").cfg == cfg.model


def test_resume_of_a_checkpoint_from_another_device_kind(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A checkpoint written on a GPU (its step generator's state is CUDA's 16-byte Philox state) resumes
    on a CPU with one note instead of a traceback, and reproducibly: two resumes end identical."""
    import shutil

    from facegan.cli.main import main

    argv = [
        "train",
        "--data",
        str(prepared),
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
        "--preset",
        "dcgan",
        "--device",
        "cpu",
        "--quiet",
    ]
    assert main([*argv, "--steps", "2", "--outdir", str(tmp_path / "a")]) == 0
    (run,) = (tmp_path / "a").iterdir()
    ckpt = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    ckpt["rng"]["step"] = torch.arange(16, dtype=torch.uint8)  # the layout torch.cuda generators use
    torch.save(ckpt, run / "checkpoints" / "latest.pt")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    capsys.readouterr()
    for root in ("a", "b"):
        assert main(["train", "--resume", str(tmp_path / root / run.name), "--steps", "4", "--quiet"]) == 0
    assert capsys.readouterr().err.count("saved on another kind of device") == 2
    a = load_checkpoint(tmp_path / "a" / run.name)
    b = load_checkpoint(tmp_path / "b" / run.name)
    assert a["step"] == b["step"] == 4
    assert all(torch.equal(a["G"][k], b["G"][k]) for k in a["G"])
