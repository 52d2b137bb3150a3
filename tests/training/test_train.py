"""End to end through the real CLI: artifacts, kill-and-resume bit-identity, SIGTERM, generate."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from facegan.cli.main import main
from facegan.networks.checkpoint import load_checkpoint
from facegan.runtime.perf import cpu_has_native_bf16
from facegan.training.schedule import rampdown_scale

TINY = ["--size", "32", "--latent-dim", "16", "--ngf", "8", "--ndf", "8", "--batch-size", "16"]


def facegan(*args: str, **kw: object) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "facegan", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kw,
    )  # type: ignore[call-overload]


def run_ok(*args: str) -> str:
    proc = facegan(*args)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return out


def assert_same_training_state(a_ckpt: Path, b_ckpt: Path) -> None:
    """Two checkpoints hold bit-identical training state: G, D, EMA G, both optimizers (moments and
    step counts), every RNG stream, the AMP scaler, the step and the config."""
    a, b = load_checkpoint(a_ckpt), load_checkpoint(b_ckpt)
    assert {"G", "D", "opt_g", "opt_d", "rng"} <= a.keys()
    assert ("G_ema" in a) == (a["config"]["gan"]["ema_kimg"] > 0)
    assert_same(a, b, "checkpoint")


def assert_same(a: object, b: object, where: str = "checkpoint") -> None:
    """`a` and `b` (nested dicts, lists, tensors) are bit-identical; the message names the first path
    that differs."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys {set(a) ^ set(b)} differ"
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def only_run(root: Path) -> Path:
    (run,) = [p for p in root.iterdir() if p.is_dir()]
    return run


def test_training_writes_every_artifact(prepared: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    code = main(
        [
            "train",
            "--data",
            str(prepared),
            *TINY,
            "--steps",
            "8",
            "--log-every",
            "2",
            "--sample-every",
            "4",
            "--ckpt-every",
            "4",
            "--num-samples",
            "16",
            "--outdir",
            str(runs),
            "--quiet",
        ]
    )
    assert code == 0
    run = only_run(runs)
    assert run.name == "00000-prepared-dcgan32"
    for name in (
        "config.json",
        "dataset_manifest.json",
        "architecture.txt",
        "stats.jsonl",
        "loss.png",
        "scores.png",
        "progress.gif",
        "real_vs_fake.png",
        "generator.safetensors",
    ):
        assert (run / name).is_file(), name
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["size"] == 32 and cfg["optim"]["lr_g"] == 2e-4
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in stats] == [2, 4, 6, 8]
    assert {"loss_d", "loss_g", "d_real", "d_fake_before", "d_fake_after", "img_per_s"} <= set(stats[0])
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step-00000004.png", "step-00000008.png"]
    assert Image.open(run / "samples" / "step-00000008.png").size == (4 * 34 + 2, 4 * 34 + 2)
    assert Image.open(run / "progress.gif").n_frames == 2
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    ckpt = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert ckpt["step"] == 8 and ckpt["images_seen"] == 128 and ckpt["epoch"] == 2
    assert set(ckpt["rng"]) == {"python", "numpy", "torch", "cuda", "step"}
    # a second run gets the next number
    main(["train", "--data", str(prepared), *TINY, "--steps", "1", "--outdir", str(runs), "--quiet"])
    assert (runs / "00001-prepared-dcgan32").is_dir()


@pytest.mark.parametrize(
    "amp",
    [
        "off",
        pytest.param(
            "bf16",
            marks=pytest.mark.skipif(
                not cpu_has_native_bf16(),
                reason="this CPU has no native bf16 (AVX512-BF16/AMX), so --amp auto is fp32 here",
            ),
        ),
    ],
)
@pytest.mark.parametrize("preset", ["dcgan", "dcgan-plus"])  # dcgan-plus: EMA and DiffAugment
def test_sigkill_and_resume_is_bit_identical(prepared: Path, tmp_path: Path, amp: str, preset: str) -> None:
    common = [
        "train",
        "--data",
        str(prepared),
        "--preset",
        preset,
        *TINY,
        "--steps",
        "240",
        "--ckpt-every",
        "20",
        "--sample-every",
        "1000",
        "--log-every",
        "10",
        "--amp",
        amp,
        "--quiet",
    ]
    run_ok(*common, "--outdir", str(tmp_path / "a"))
    reference = only_run(tmp_path / "a") / "checkpoints" / "latest.pt"

    proc = facegan(*common, "--outdir", str(tmp_path / "b"))
    deadline = time.time() + 120
    while not list((tmp_path / "b").glob("*/checkpoints/ckpt-00000040.pt")):
        assert proc.poll() is None, "run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run = only_run(tmp_path / "b")
    killed_at = load_checkpoint(run / "checkpoints" / "latest.pt")["step"]
    assert killed_at < 240

    run_ok("train", "--resume", "auto", "--outdir", str(tmp_path / "b"), "--quiet")
    assert_same_training_state(run / "checkpoints" / "latest.pt", reference)
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["config"]["perf"]["amp"] == amp
    steps = [json.loads(line)["step"] for line in (run / "stats.jsonl").read_text().splitlines()]
    assert steps == list(range(10, 241, 10))  # no duplicated or missing records across the kill


def test_rampdown_scale_falls_linearly_over_the_last_steps() -> None:
    assert [rampdown_scale(s, 10, 4) for s in range(10)] == [1, 1, 1, 1, 1, 1, 1, 0.75, 0.5, 0.25]
    assert rampdown_scale(0, 10, 0) == 1.0 and rampdown_scale(0, 10, 20) == 0.5


def test_lr_rampdown_extends_a_finished_run_exactly(prepared: Path, tmp_path: Path) -> None:
    """A finished run resumed with more --steps and --lr-rampdown ends bit-identical to one that ramped
    from the start, and its learning rates have fallen to 1/rampdown of the configured ones."""
    common = [
        "train",
        "--data",
        str(prepared),
        *TINY,
        "--ckpt-every",
        "6",
        "--sample-every",
        "100",
        "--log-every",
        "3",
        "--quiet",
    ]
    assert main([*common, "--steps", "12", "--lr-rampdown", "6", "--outdir", str(tmp_path / "a")]) == 0
    reference = only_run(tmp_path / "a") / "checkpoints" / "latest.pt"
    ckpt = load_checkpoint(reference)
    for opt in ("opt_g", "opt_d"):
        assert ckpt[opt]["param_groups"][0]["lr"] == pytest.approx(2e-4 / 6, rel=1e-12)

    assert main([*common, "--steps", "6", "--outdir", str(tmp_path / "b")]) == 0
    run = only_run(tmp_path / "b")
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["opt_g"]["param_groups"][0]["lr"] == 2e-4
    assert main(["train", "--resume", str(run), "--steps", "12", "--lr-rampdown", "6", "--quiet"]) == 0
    assert_same_training_state(run / "checkpoints" / "latest.pt", reference)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_sigterm_saves_a_checkpoint_and_resume_finishes(
    prepared: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    """SIGTERM (a scheduler) and SIGHUP (a dropped SSH session) both stop cleanly with a checkpoint."""
    runs = tmp_path / "runs"
    proc = facegan(
        "train",
        "--data",
        str(prepared),
        *TINY,
        "--steps",
        "100000",
        "--ckpt-every",
        "1000",
        "--outdir",
        str(runs),
        "--quiet",
    )
    deadline = time.time() + 120
    while not [p for p in runs.glob("*/stats.jsonl") if p.stat().st_size]:
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.01)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert sig.name in err and "--resume" in err
    run = only_run(runs)
    saved = load_checkpoint(run / "checkpoints" / "latest.pt")["step"]
    assert 0 < saved < 1000
    run_ok("train", "--resume", str(run), "--steps", str(saved + 3), "--quiet")
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["step"] == saved + 3


def test_generate_from_checkpoint_and_export(prepared: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    main(["train", "--data", str(prepared), *TINY, "--steps", "4", "--outdir", str(runs), "--quiet"])
    run = only_run(runs)
    ckpt = run / "checkpoints" / "latest.pt"
    assert (
        main(
            [
                "generate",
                "--checkpoint",
                str(ckpt),
                "--n",
                "9",
                "--seed",
                "5",
                "--out",
                str(tmp_path / "grid.png"),
            ]
        )
        == 0
    )
    assert Image.open(tmp_path / "grid.png").size == (3 * 34 + 2, 3 * 34 + 2)
    exported = tmp_path / "shared" / "g.safetensors"
    assert main(["export", "--checkpoint", str(run), "--out", str(exported)]) == 0
    main(["generate", "--checkpoint", str(ckpt), "--seed", "3,7-8", "--out", str(tmp_path / "a")])
    main(["generate", "--checkpoint", str(exported), "--seed", "3,7-8", "--out", str(tmp_path / "b")])
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["seed000003.png", "seed000007.png", "seed000008.png"]
    for name in names:  # the exported generator makes exactly the checkpoint's faces
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    # a face is fixed by its seed, whatever else is generated with it
    main(["generate", "--checkpoint", str(exported), "--seed", "7", "--n", "1", "--out", str(tmp_path / "c")])
    single = (tmp_path / "c" / "seed000007.png").read_bytes()
    assert single == (tmp_path / "a" / "seed000007.png").read_bytes()


def test_plot_rebuilds_figures(prepared: Path, tmp_path: Path) -> None:
    main(
        [
            "train",
            "--data",
            str(prepared),
            *TINY,
            "--steps",
            "4",
            "--log-every",
            "1",
            "--outdir",
            str(tmp_path / "runs"),
            "--quiet",
        ]
    )
    run = only_run(tmp_path / "runs")
    for name in ("loss.png", "scores.png", "progress.gif"):
        (run / name).unlink()
    assert main(["plot", str(run)]) == 0
    assert all((run / n).is_file() for n in ("loss.png", "scores.png", "progress.gif"))


@pytest.mark.parametrize("preset,latent", [("dcgan", 100), ("dcgan-z128", 128)])
def test_presets(preset: str, latent: int) -> None:
    from facegan.config.files import preset_config

    cfg = preset_config(preset)
    assert cfg.model.latent_dim == latent and cfg.model.size == 64 and cfg.train.batch_size == 128


def test_eval_during_training_tracks_best(prepared: Path, tmp_path: Path) -> None:
    """--eval-every appends to metrics.jsonl and keeps checkpoints/best.pt at the best-scoring step."""
    runs = tmp_path / "runs"
    assert (
        main(
            [
                "train",
                "--data",
                str(prepared),
                *TINY,
                "--steps",
                "6",
                "--eval-every",
                "3",
                "--eval-num-fake",
                "32",
                "--ckpt-every",
                "100",
                "--outdir",
                str(runs),
                "--quiet",
            ]
        )
        == 0
    )
    run = only_run(runs)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [3, 6]
    best = min(records, key=lambda r: abs(r["c2st_acc"] - 0.5))
    ckpt = load_checkpoint(run / "checkpoints" / "best.pt")
    assert ckpt["step"] == best["step"] and ckpt["best"]["value"] == best["c2st_acc"]


def test_eval_setup_errors_before_training(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    monkeypatch.delenv("FACEGAN_INCEPTION_WEIGHTS", raising=False)
    code = main(
        [
            "train",
            "--data",
            str(prepared),
            *TINY,
            "--steps",
            "2",
            "--eval-every",
            "1",
            "--eval-metrics",
            "fid2k",
            "--outdir",
            str(tmp_path / "runs"),
            "--quiet",
        ]
    )
    assert code == 2 and "pt_inception-2015-12-05-6726825d.pth" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
