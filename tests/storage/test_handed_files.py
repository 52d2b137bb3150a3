"""Files a user is handed (checkpoints, exports, configs, weights) that are crafted to hurt: a zip bomb in
a `.pt`, configs nested past the recursion limit, YAML alias bombs, sizes the machine cannot hold,
invalid checkpoint fields, FIFOs, a weights file swapped after its check, and names that look like
paths. Each is refused in one line, before the cost it would impose, and nothing it carries runs."""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

import facegan
from facegan.cli.main import main
from facegan.config.files import load_config_file
from facegan.config.schema import ModelConfig, RunConfig
from facegan.errors import FaceganError
from facegan.networks.checkpoint import CONFIG_KEY, FORMAT, load_checkpoint, read_exported, save_checkpoint
from facegan.networks.factory import build_models
from facegan.sampling.generate import load_generator
from tests.conftest import deadline

SMALL = ModelConfig(size=32, latent_dim=16, ngf=8, ndf=8)


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr().err


def _one_line(code: int, err: str) -> bool:
    return code == 2 and err.count("\n") == 1 and "Traceback" not in err


def _state(**extra: Any) -> dict[str, Any]:
    g, d = build_models(SMALL)
    return {
        "format": FORMAT,
        "config": RunConfig(model=SMALL).to_dict(),
        "step": 1,
        "G": g.state_dict(),
        "D": d.state_dict(),
        **extra,
    }


# ----------------------------------------------------------------------------- a .pt zip bomb


@pytest.fixture
def no_torch_load(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every torch.load call (none may reach a hostile archive: it would inflate every record)."""
    calls: list[object] = []
    real = torch.load

    def spy(f: object, *args: Any, **kwargs: Any) -> Any:
        calls.append(f)
        return real(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    return calls


def test_compressed_tensor_bomb_is_refused_before_inflating(
    tmp_path: Path, no_torch_load: list[object]
) -> None:
    # 64 MiB of zeros in G, deflated to ~64 KB: the metadata says what it would inflate to.
    plain = tmp_path / "plain.pt"
    torch.save(_state(G={"main.0.weight": torch.zeros(16 * 2**20)}), plain)
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(bomb, "w") as out:
        for info in src.infolist():
            out.writestr(info.filename, src.read(info.filename), compress_type=zipfile.ZIP_DEFLATED)
    plain.unlink()
    assert bomb.stat().st_size < 200_000
    for load in (load_checkpoint, load_generator):
        with pytest.raises(FaceganError, match=r"compressed record 'plain/data/0'.* to 67,108,864") as err:
            load(bomb)
        assert "\n" not in str(err.value)
    assert no_torch_load == []


def test_records_beyond_what_the_config_implies_are_refused(tmp_path: Path) -> None:
    # Stored, not compressed, but 40 MiB more than a 32 px, ngf 8 checkpoint can hold.
    path = tmp_path / "fat.pt"
    torch.save(_state(best={"pad": torch.zeros(10 * 2**20)}), path)
    with pytest.raises(FaceganError, match="more than its config implies"):
        load_checkpoint(path)


# ----------------------------------------------------------------------------- nesting and aliases


def test_safetensors_config_nested_100000_deep_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "deep.safetensors"
    g, _ = build_models(SMALL)
    save_file(
        {k: v.contiguous() for k, v in g.state_dict().items()},
        str(path),
        metadata={CONFIG_KEY: "[" * 100_000 + "]" * 100_000, "format": "facegan-generator"},
    )
    with pytest.raises(FaceganError, match="nested"):
        read_exported(path)  # was RecursionError
    code, err = _cli(capsys, "generate", "--checkpoint", str(path), "--out", str(tmp_path / "x.png"))
    assert _one_line(code, err) and "nested" in err


def test_yaml_alias_bomb_is_refused_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The classic expansion, placed where the config reads it: 9^7 = 4.8 million strings from 300 bytes.
    anchors = ['&a0 ["x","x","x","x","x","x","x","x","x"]']
    anchors += [f"&a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 8)]
    text = "model:\n  ngf: [" + ", ".join(anchors) + "]\n"
    assert len(text) < 400
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    t0 = time.perf_counter()
    with pytest.raises(FaceganError, match="alias") as err:
        load_config_file(path)
    assert time.perf_counter() - t0 < 2 and len(str(err.value)) < 300
    code, out = _cli(capsys, "train", "--config", str(path), "--dry-run")
    assert _one_line(code, out) and "alias" in out


def test_any_yaml_alias_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "alias.yaml"
    path.write_text("train:\n  seed: &s 3\n  batch_size: *s\n")
    with pytest.raises(FaceganError, match=r"alias \(\*s\)"):
        load_config_file(path)


def test_yaml_nested_past_the_recursion_limit_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("model:\n  ngf: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(FaceganError, match="nested more than"):
        load_config_file(path)


def test_oversized_config_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("# padding\n" * 100_000)
    with pytest.raises(FaceganError, match="at most"):
        load_config_file(path)


def test_checkpoint_config_nested_past_the_recursion_limit_is_one_line(tmp_path: Path) -> None:
    deep: list[Any] = []
    for _ in range(3000):  # loading builds it iteratively; deepcopy (migration) recursed past the limit
        deep = [deep]
    state = _state()
    state["config"]["model"]["ngf"] = deep
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)  # writing it recurses (the attacker's machine is not ours)
    try:
        path = save_checkpoint(tmp_path, state, 1, keep=3)
    finally:
        sys.setrecursionlimit(limit)
    with pytest.raises(FaceganError, match="nested"):
        load_generator(path)


# ----------------------------------------------------------------------------- sizes the machine survives


@pytest.mark.parametrize(
    "change",
    [
        {"ngf": 1024},
        {"size": 32, "ngf": 1024, "ndf": 1024},
        {"size": 256, "ndf": 512},
        {"arch": "r3gan", "size": 128, "ngf": 1024},
    ],
)
def test_a_model_too_large_to_train_is_one_line(change: dict[str, Any]) -> None:
    with pytest.raises(FaceganError, match="parameters") as err:
        ModelConfig(**change)
    assert "\n" not in str(err.value)


def test_ngf_4096_dry_run_is_refused_before_anything_is_built(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import facegan.networks.factory
    import facegan.training.build

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a model was built before its size was checked")

    monkeypatch.setattr(facegan.networks.factory, "build_models", refuse)
    monkeypatch.setattr(facegan.training.build, "build_models", refuse)
    code, err = _cli(capsys, "train", "--ngf", "4096", "--dry-run")  # was the declared maximum
    assert _one_line(code, err) and "--ngf must be at most 1024" in err, err
    code, err = _cli(capsys, "train", "--ngf", "1024", "--dry-run")  # within it, too large at 64 px
    assert _one_line(code, err) and "generator" in err and "parameters" in err, err


@pytest.mark.parametrize("arch", ["dcgan", "r3gan"])
def test_the_size_estimate_bounds_the_real_models(arch: str) -> None:
    from facegan.storage.sizes import estimate_params

    for size, ngf, latent in [(32, 8, 16), (64, 64, 100), (128, 3, 4096), (256, 48, 1)]:
        cfg = ModelConfig(size=size, ngf=ngf, ndf=ngf, latent_dim=latent, arch=arch)
        with torch.device("meta"):
            g, d = build_models(cfg)
        n_g, n_d = (sum(p.numel() for p in m.parameters()) for m in (g, d))
        e_g, e_d = estimate_params(size, latent, ngf, ngf, 3)
        # An upper bound, and not a loose one (the R3GAN is over-counted at most ~2.2 times).
        assert n_g <= e_g <= 3 * n_g + 20_000 and n_d <= e_d <= 3 * n_d + 20_000, (size, ngf, latent)


def test_the_declared_width_maximum_is_a_model_that_can_be_built() -> None:
    from facegan.config.schema import MAX_WIDTH

    ModelConfig(size=32, ngf=MAX_WIDTH, ndf=64)  # accepted: G alone fits the budget at 32 px
    with pytest.raises(FaceganError, match=f"--ngf must be at most {MAX_WIDTH}"):
        ModelConfig(size=32, ngf=MAX_WIDTH + 1, ndf=64)


# ----------------------------------------------------------------------------- every checkpoint field


@pytest.mark.parametrize(
    "change,word",
    [
        ({"step": -5}, "step"),
        ({"step": "3"}, "step"),
        ({"step": True}, "step"),
        ({"epoch": -1}, "epoch"),
        ({"images_seen": 2.5}, "images_seen"),
        ({"dataset_hash": 7}, "dataset_hash"),
        ({"guard": {"lr_scale": math.nan, "rollbacks": 0, "skip": []}}, "guard"),
        ({"guard": {"lr_scale": 1.0, "rollbacks": 0, "skip": [[3]]}}, "guard"),
        ({"best": {"step": 1, "metric": "c2st_acc", "value": "good", "score": 0.1}}, "best"),
        ({"rng": "seed"}, "rng"),
        ({"world_size": 0}, "world_size"),
        ({"opt_g": [1, 2]}, "opt_g"),
        ({"scaler": 3}, "scaler"),
    ],
)
def test_every_checkpoint_field_is_checked_on_load(tmp_path: Path, change: dict[str, Any], word: str) -> None:
    path = save_checkpoint(tmp_path, _state(**change), 1, keep=3)
    with pytest.raises(FaceganError, match=word) as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value)


def test_resume_of_a_negative_step_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = save_checkpoint(tmp_path / "run" / "checkpoints", _state(step=-5), 1, keep=3)
    code, err = _cli(capsys, "train", "--resume", str(path), "--outdir", str(tmp_path))
    assert _one_line(code, err) and "step" in err, err


def test_the_committed_checkpoint_passes_every_field_check() -> None:
    fixture = Path(__file__).parents[1] / "fixtures" / "ckpt-v0.1.0-schema2.pt"
    assert load_checkpoint(fixture)["step"] >= 0


# ----------------------------------------------------------------------------- not a regular file


# Run in its own process: a reader blocked inside a C extension (safetensors) may hold the GIL.
RELEASE = """
import os, sys, time
time.sleep(3)
while True:
    try:
        os.close(os.open(sys.argv[1], os.O_WRONLY | os.O_NONBLOCK))  # EOF for a waiting reader
    except OSError:
        pass
    time.sleep(0.05)
"""


@contextlib.contextmanager
def fifo(path: Path) -> Iterator[Path]:
    """A FIFO at `path`. A reader stuck on it is released after 3 s (the test then fails on time)."""
    os.mkfifo(path)
    releaser = subprocess.Popen([sys.executable, "-c", RELEASE, str(path)])
    try:
        yield path
    finally:
        releaser.kill()
        releaser.wait()


@pytest.mark.parametrize(
    "name,load",
    [
        ("g.safetensors", load_generator),
        ("ckpt.pt", load_checkpoint),
        ("run.yaml", load_config_file),
    ],
)
def test_a_fifo_is_refused_at_once(tmp_path: Path, name: str, load: Callable[[Path], object]) -> None:
    with fifo(tmp_path / name) as path:
        t0 = time.perf_counter()
        with deadline(20), pytest.raises(FaceganError, match="not a regular file"):
            load(path)
        assert time.perf_counter() - t0 < 2


# ----------------------------------------------------------------------------- Inception weights


def test_inception_weights_swapped_after_the_check_never_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tf_inception = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")
    from facegan.metrics.inception import inception_extractor
    from tests.storage.test_no_code_exec import Evil

    marker = tmp_path / "code-ran"
    path = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save({"Mixed_7c.branch_pool.conv.weight": torch.zeros(1)}, path)
    cls = tf_inception.FeatureExtractorInceptionV3
    real_init = cls.__init__

    def swapped(self: Any, *args: Any, **kwargs: Any) -> None:
        # The file is replaced between facegan's check and the network's construction.
        torch.save({"Mixed_7c.branch_pool.conv.weight": torch.zeros(1), "x": Evil(marker)}, path)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(cls, "__init__", swapped)
    with contextlib.suppress(FaceganError):  # the tiny state does not fit the network: a clear error
        inception_extractor(path)
    assert not marker.exists(), "torch-fidelity re-read the swapped file with weights_only=False"


# ----------------------------------------------------------------------------- Hub ids are explicit


@pytest.fixture
def hub_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every repo id facegan.load hands to the Hub (none reach a network here)."""
    import facegan.api

    calls: list[str] = []

    class FakeHub:
        @staticmethod
        def from_pretrained(repo: str, **kwargs: Any) -> Any:
            calls.append(str(repo))
            raise FaceganError(f"could not get Hub repo {repo!r} (offline)")

    monkeypatch.setattr(facegan.api, "_hub", lambda: FakeHub)
    return calls


@pytest.mark.parametrize(
    "name", ["runs/typo", "./runs/typo", ".cache/model", "runs/00001-x/checkpoints", "owner/name"]
)
def test_a_name_that_is_not_there_is_never_looked_up_on_the_hub(name: str, hub_calls: list[str]) -> None:
    with pytest.raises(FaceganError, match="hf:") as err:
        facegan.load(name)
    assert hub_calls == [] and "\n" not in str(err.value)


def test_an_explicit_hub_id_goes_to_the_hub(hub_calls: list[str]) -> None:
    with pytest.raises(FaceganError, match="offline"):
        facegan.load("hf:owner/name")
    assert hub_calls == ["hf:owner/name"]
    with pytest.raises(FaceganError, match="not a Hub repo id"):
        facegan.load("hf:../etc")  # not an owner/name id
    assert hub_calls == ["hf:owner/name"]
