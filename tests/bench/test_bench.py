"""Smoke test of bench/throughput.py: every row runs end to end on synthetic JPEGs (no timing asserted)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from facegan.runtime.perf import cpu_has_native_bf16

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # bench/ is not installed: import it from the repo
# Row f (exact fp32) exists only where the default is not fp32, i.e. on CPUs with native bf16.
ROWS = ("a", "b", *(("f",) if cpu_has_native_bf16() else ()), "c", "gen-default", "gen-fastest")


def load_bench() -> ModuleType:
    """The benchmark's command (bench/speed/cli.py; `python bench/throughput.py` runs its `main`)."""
    from bench.speed import cli

    return cli


def test_bench_runs_every_row_on_synthetic_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench = load_bench()
    out = tmp_path / "bench.json"
    # Tiny nets and batches: this checks the plumbing, not the speed. One thread: on a loaded 2-core
    # machine OpenMP barriers make tiny ops stall far more than they compute.
    code = bench.main(
        [
            "--data",
            "synthetic:40",
            "--device",
            "cpu",
            "--size",
            "32",
            "--ngf",
            "8",
            "--ndf",
            "8",
            "--latent-dim",
            "16",
            "--batch-size",
            "8",
            "--windows",
            "2",
            "--steps-per-window",
            "1",
            "--gen-batch",
            "8",
            "--gen-steps-per-window",
            "2",
            "--threads",
            "1",
            "--candidate",
            "amp=off,channels_last=off",
            "--candidate",
            "amp=off,channels_last=on,fused_adam=on",
            "--mem-train-steps",
            "2",
            "--mem-full-count",
            "0",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    report = capsys.readouterr().out
    results = json.loads(out.read_text())

    rows = {r["key"]: r for r in results["rows"]}
    assert tuple(rows) == ROWS
    for key, row in rows.items():
        assert row["error"] is None, (key, row["error"])
        assert len(row["rates"]) == 2
        for name in ("median", "gflop_per_img", "achieved_flops"):
            assert math.isfinite(row[name]) and row[name] > 0, (key, name, row[name])
        # A row's share of peak is reported wherever its peak is known; a bf16 row on a CPU with AMX
        # tiles has none (bench/speed/env.py does not model AMX), and the report says so.
        if row["peak_flops"] is None:
            assert row["precision"] == "bf16" and "not modelled" in results["env"]["cpu_bf16_peak_derivation"]
            assert row["pct_peak"] is None
        else:
            assert math.isfinite(row["pct_peak"]) and row["pct_peak"] > 0, (key, row["pct_peak"])
        assert f"\n{key} " in report  # every row is in the printed table
    for key in ("b", "c", *(("f",) if "f" in rows else ())):
        for ratio in ("ratio_to_a", "paired_ratio_to_a"):
            assert math.isfinite(rows[key][ratio]) and rows[key][ratio] > 0
        assert all(math.isfinite(v) for v in rows[key]["losses"].values())
    assert rows["a"]["losses"] and all(math.isfinite(v) for v in rows["a"]["losses"].values())
    assert len(results["c_candidates"]) == 2 and all("probe_img_s" in c for c in results["c_candidates"])

    flops = results["flops"]
    assert 0 < flops["g_forward"] < flops["facegan_step"] <= flops["reference_step"]
    assert results["params"]["G"] > 0 and results["data"]["images"] == 40

    mem = results["memory"]
    assert [m.get("error") for m in mem] == [None]
    assert mem[0]["images"] == 40 and mem[0]["array_bytes"] == 40 * 3 * 32 * 32
    assert all(m["peak_rss"] > 0 and math.isfinite(m["delta_over_array"]) for m in mem)
    assert "targets:" in report and "memory," in report


def test_bench_data_errors(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    bench = load_bench()
    assert bench.main(["--data", "/nonexistent/faces.zip", "--only", "b", "--memory", "off"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert bench.main(["--data", "synthetic:40", "--candidate", "amp=fp8"]) == 2
    assert "--amp must be one of" in capsys.readouterr().err
    # No --data and no CelebA zip next to the repo: one line telling the user what to pass.
    monkeypatch.setattr(bench, "DEFAULT_DATA", Path("/nonexistent/img_align_celeba.zip"))
    with pytest.raises(SystemExit) as exc:
        bench.main([])
    assert exc.value.code == 2
    assert "pass --data PATH" in capsys.readouterr().err


def test_tiled_dataset_repeats_the_packed_array(prepared: Path, tmp_path: Path) -> None:
    import numpy as np

    from bench.speed.memory import make_tiled_dataset
    from facegan.data.dataset import PackedDataset

    src = PackedDataset(prepared)
    tiled = PackedDataset(make_tiled_dataset(prepared, tmp_path / "tiled", 150))
    assert len(tiled) == 150 and tiled.size == src.size
    assert np.array_equal(tiled.images[:64], src.images)
    assert np.array_equal(tiled.images[128:150], src.images[:22])


def test_documented_command_runs_the_package() -> None:
    """`python bench/throughput.py ...`, as docs/training.md, docs/recipes.md, BENCHMARKS.md and
    bench/README.md write it."""
    done = subprocess.run(
        [sys.executable, "bench/throughput.py", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: bench/throughput.py") and "--candidate SPEC" in done.stdout


def test_facegan_rows_time_the_loops_step(prepared: Path, tmp_path: Path) -> None:
    """Row b's runner trains exactly as `facegan train` with default settings does (same weights after
    the same steps), so a change to the training setup cannot leave the benchmark measuring another."""
    import torch

    from bench.speed.runners import FaceganRunner
    from facegan.config.schema import ModelConfig, PerfConfig, RunConfig, TrainConfig
    from facegan.networks.checkpoint import load_checkpoint
    from facegan.runtime.perf import resolve
    from facegan.training.loop import train

    mc, cpu = ModelConfig(size=32, latent_dim=16, ngf=8, ndf=8), torch.device("cpu")
    cfg = RunConfig(
        model=mc,
        train=TrainConfig(
            data=str(prepared), batch_size=8, steps=3, device="cpu", sample_every=1000, ckpt_every=1000
        ),
    )
    run = train(cfg, runs_root=tmp_path / "runs", quiet=True)
    ckpt = load_checkpoint(run.run_dir / "checkpoints" / "latest.pt")
    runner = FaceganRunner(prepared, resolve(PerfConfig(), cpu), mc, 8, cpu)
    for _ in range(3):
        runner.step()
    ours = runner.training
    for name, net in (("G", ours.g), ("D", ours.d)):
        for key, value in net.state_dict().items():
            assert torch.equal(value, ckpt[name][key]), (name, key)
    assert ("G_ema" in ckpt) == (ours.ema is not None)


def tiny_generator(tmp_path: Path) -> Path:
    """An untrained 32 px generator exported as safetensors (for the bench scripts' end-to-end runs)."""
    from facegan.config.schema import ModelConfig
    from facegan.networks.checkpoint import export_generator
    from facegan.networks.factory import build_models

    cfg = ModelConfig(size=32, latent_dim=16, ngf=8, ndf=8)
    g, _ = build_models(cfg)
    return export_generator(g, cfg, tmp_path / "g.safetensors")


def run_bench(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a bench script (path relative to the repository) as a user would."""
    return subprocess.run([sys.executable, *cmd], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_spectrum_puts_a_checkerboard_at_half_the_sampling_rate(prepared: Path, tmp_path: Path) -> None:
    """bench/spectrum.py: a one-pixel checkerboard's amplitude is at (size/2, size/2), and the script
    compares a generator's spectrum with its data's end to end."""
    from bench import spectrum

    sign = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2 * 2 - 1  # (8, 8) of ±1
    amp = spectrum.amplitude(sign.float().expand(2, 3, 8, 8))
    assert amp[4, 4] == pytest.approx(64) and amp.sum() == pytest.approx(64)
    gen = tiny_generator(tmp_path)
    done = run_bench(["bench/spectrum.py", "--data", str(prepared), "--checkpoint", str(gen), "--num", "20"])
    assert done.returncode == 0, done.stderr
    (row,) = [line for line in done.stdout.splitlines() if line.startswith(str(gen)[-60:])]
    assert len(row.split()) == 1 + 4 + 6  # name, 4 frequencies, radius bands 0-4 … 20-24


def test_compare_rule_needs_a_win_in_every_draw_on_every_measure() -> None:
    """bench/compare.py's pre-registered rule: a better mean with one lost draw is a tie, an equal draw
    is not a win, and C2ST is judged by its distance from chance (0.5), not by its size."""
    from bench.compare import verdicts

    base = [
        {"swd": 20.0, "c2st_acc": 0.70, "prdc_recall": 0.20},
        {"swd": 20.0, "c2st_acc": 1.00, "prdc_recall": 0.20},
    ]
    better = [
        {"swd": 18.0, "c2st_acc": 0.40, "prdc_recall": 0.25},
        {"swd": 19.0, "c2st_acc": 0.95, "prdc_recall": 0.21},
    ]
    assert verdicts(base, better) == {"swd": "win", "c2st_acc": "win", "prdc_recall": "win", "beats": "yes"}
    # Mean recall better (0.26 vs 0.20) but one draw lost; C2ST equal (1.000) in one draw.
    mixed = [
        {"swd": 18.0, "c2st_acc": 0.60, "prdc_recall": 0.33},
        {"swd": 21.0, "c2st_acc": 1.00, "prdc_recall": 0.19},
    ]
    assert verdicts(base, mixed) == {"swd": "tie", "c2st_acc": "tie", "prdc_recall": "tie", "beats": "no"}
    assert verdicts(better, base)["swd"] == "loss"
    with pytest.raises(ValueError):
        verdicts(base, better[:1])


def test_compare_runs_end_to_end_and_a_generator_does_not_beat_itself(prepared: Path, tmp_path: Path) -> None:
    from facegan.config.schema import ModelConfig
    from facegan.networks.checkpoint import export_generator
    from facegan.networks.factory import build_models

    cfg = ModelConfig(size=32, latent_dim=16, ngf=8, ndf=8)
    g, _ = build_models(cfg)
    gen = export_generator(g, cfg, tmp_path / "g.safetensors")
    out = tmp_path / "cmp.json"
    cmd = [
        "bench/compare.py",
        "--data",
        str(prepared),
        "--baseline",
        str(gen),
        "--candidate",
        str(gen),
        "--draws",
        "0",
        "1",
        "--num-fake",
        "16",
        "--json",
        str(out),
    ]
    done = subprocess.run([sys.executable, *cmd], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert [len(report["results"][k]) for k in ("baseline", "candidate")] == [2, 2]
    assert report["results"]["baseline"] == report["results"]["candidate"]  # same generator, same draws
    assert report["results"]["baseline"][0] != report["results"]["baseline"][1]  # the draws differ
    assert set(report["verdict"]) == {
        "swd",
        "c2st_acc",
        "prdc_precision",
        "prdc_recall",
        "prdc_density",
        "prdc_coverage",
        "beats",
    }
    assert report["verdict"]["beats"] == "no" and "in every draw: no" in done.stdout
    nope = str(tmp_path / "nope.safetensors")
    missing = subprocess.run(
        [sys.executable, *cmd[:5], "--candidate", nope], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert missing.returncode == 2 and missing.stderr.startswith("error: ")
    assert "Traceback" not in missing.stderr
    # Checked before minutes of evaluation, not when the results are about to be written.
    bad_json = subprocess.run(
        [sys.executable, *cmd[:-2], "--json", str(tmp_path / "no" / "cmp.json")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad_json.returncode == 2 and "--json: folder" in bad_json.stderr
    assert "Traceback" not in bad_json.stderr


def test_c2st_probe_changes_and_end_to_end(prepared: Path, tmp_path: Path) -> None:
    """bench/c2st_probe.py: each change keeps uint8 (N, 3, H, W); a moved crop is the image shifted with
    no border of its own, the 2× smoothing removes a one-pixel checkerboard entirely; the script prints
    one row per change, per shift and per generator."""
    from bench import c2st_probe

    board = ((np.arange(8)[:, None] + np.arange(8)[None, :]) % 2 * 200 + 20).astype(np.uint8)
    x = np.broadcast_to(board, (2, 3, 8, 8)).copy()
    for _, change in c2st_probe.CHANGES:
        y = change(x)
        assert y.dtype == np.uint8 and y.shape == x.shape
    wide = np.arange(2 * 3 * 20 * 20, dtype=np.int64).reshape(2, 3, 20, 20).astype(np.uint8)
    assert c2st_probe.crop(wide).shape == (2, 3, 4, 4)
    assert (c2st_probe.crop(wide, 1)[..., :-1] == c2st_probe.crop(wide)[..., 1:]).all()
    assert (c2st_probe.crop(wide, 8) == wide[:, :, 8:12, 16:20]).all()
    assert np.ptp(c2st_probe.smooth(x)) == 0  # every pixel the board's mean
    assert np.ptp(c2st_probe.blur(x)) < np.ptp(x)
    cmd = ["bench/c2st_probe.py", "--data", str(prepared), "--num", "16", "--checkpoint"]
    done = run_bench([*cmd, str(tiny_generator(tmp_path))])
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if not line.startswith("#")]
    assert len(rows) == len(c2st_probe.CHANGES) + len(c2st_probe.SHIFTS) + 1
    assert "raw / both smoothed" in rows[-1]
    missing = run_bench([*cmd, str(tmp_path / "none.pt")])
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "does not exist" in missing.stderr
