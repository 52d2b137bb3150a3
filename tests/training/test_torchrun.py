"""2 ranks under torchrun (CPU, gloo) train as 1 process does, resume, restart and stop cleanly."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from facegan.networks.checkpoint import load_checkpoint
from tests.training.helpers import TINY, finish, start
from tests.training.test_train import assert_same

# BatchNorm-free (R3GAN-style G and D), with EMA, lazy R1/R2 and DiffAugment; exact fp32.
BN_FREE = [
    *TINY,
    "--preset",
    "r3gan",
    "--amp",
    "off",
    "--log-every",
    "1",
    "--sample-every",
    "1000",
    "--ckpt-every",
    "1000",
]


def one_process(*args: str) -> list[str]:
    return [sys.executable, "-m", "facegan", "train", *args]


def torchrun(*args: str, nproc: int = 2, launcher: tuple[str, ...] = ()) -> list[str]:
    """docs/training.md's torchrun command (as `python -m torch.distributed.run`) starting `facegan train`."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(nproc),
        *launcher,
        "-m",
        "facegan",
        "train",
        *args,
    ]


def run(cmd: list[str], code: int = 0) -> tuple[str, str]:
    return finish(start(cmd), code)


def run_all(*cmds: list[str]) -> None:
    """Start the commands together (their start-up, mostly imports, overlaps) and wait for all."""
    for proc in [start(cmd) for cmd in cmds]:
        finish(proc)


def only_run(root: Path) -> Path:
    (run_dir,) = [p for p in root.iterdir() if p.is_dir()]
    return run_dir


def latest(root: Path) -> dict:
    return load_checkpoint(only_run(root) / "checkpoints" / "latest.pt")


def max_diff(a: dict, b: dict) -> float:
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point())


# ----------------------------------------------------------------------------- 2 ranks (torchrun)


@pytest.fixture(scope="module")
def two_steps(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same BatchNorm-free run for 2 steps on 1 process (one/) and on 2 ranks (two/)."""
    root = tmp_path_factory.mktemp("two_steps")
    run_all(
        one_process("--data", str(data), *BN_FREE, "--steps", "2", "--outdir", str(root / "one")),
        torchrun("--data", str(data), *BN_FREE, "--steps", "2", "--outdir", str(root / "two")),
    )
    return root


def test_two_ranks_step_equals_one_process_step_without_batchnorm(two_steps: Path) -> None:
    one, two = latest(two_steps / "one"), latest(two_steps / "two")
    for net in ("G", "D", "G_ema"):
        assert max_diff(one[net], two[net]) < 1e-6, net  # measured 2e-7: float summation order only
    assert two["world_size"] == 2 and len(two["rng_ranks"]) == 2
    stats = [
        [json.loads(x) for x in (only_run(two_steps / n) / "stats.jsonl").read_text().splitlines()]
        for n in ("one", "two")
    ]
    assert [r["step"] for r in stats[1]] == [1, 2]
    for a, b in zip(*stats):  # reduced over the ranks: the global batch's means
        for key in ("loss_d", "loss_g", "d_real", "d_fake_before", "d_fake_after", "reg"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key


def test_resume_from_two_ranks_on_one_and_from_one_on_two(two_steps: Path, tmp_path: Path) -> None:
    """Both continuations end where the one-process run does (a BatchNorm-free config: up to float
    summation order); the RNG streams continue, so the batches and noise of steps 3-4 are the same."""
    for name in ("one", "two"):
        shutil.copytree(two_steps / name, tmp_path / name)
    shutil.copytree(two_steps / "one", tmp_path / "one-more")
    more = ["--steps", "4", "--quiet"]
    run_all(
        one_process("--resume", str(only_run(tmp_path / "two")), *more),  # 2 ranks → 1
        torchrun("--resume", str(only_run(tmp_path / "one")), *more),  # 1 → 2 ranks
        one_process("--resume", str(only_run(tmp_path / "one-more")), *more),
    )  # the 1-process reference
    reference = latest(tmp_path / "one-more")
    for name in ("one", "two"):
        ckpt = latest(tmp_path / name)
        assert ckpt["step"] == 4
        for net in ("G", "D", "G_ema"):
            assert max_diff(ckpt[net], reference[net]) < 1e-5, (name, net)


def test_only_rank_zero_writes_and_the_shortcut_launches(data: Path, tmp_path: Path) -> None:
    """`facegan train --nproc-per-node 2` (torchrun's launcher): one run folder, one record per log
    step, one sample grid per interval, one checkpoint per interval, one line of output."""
    runs = tmp_path / "runs"
    out, _ = run(
        [
            sys.executable,
            "-m",
            "facegan",
            "train",
            "--nproc-per-node",
            "2",
            "--data",
            str(data),
            *TINY,
            "--steps",
            "6",
            "--log-every",
            "2",
            "--sample-every",
            "3",
            "--ckpt-every",
            "3",
            "--ema-kimg",
            "1",
            "--outdir",
            str(runs),
        ]
    )
    assert out.count("run folder:") == 1
    run_dir = only_run(runs)
    stats = [json.loads(x) for x in (run_dir / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in stats] == [2, 4, 6]
    samples = sorted(p.name for p in (run_dir / "samples").iterdir())
    assert samples == ["step-00000003.png", "step-00000006.png"]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "ckpt-00000003.pt",
        "ckpt-00000006.pt",
        "latest.pt",
    ]
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert (run_dir / "generator.safetensors").is_file() and (run_dir / "progress.gif").is_file()
    ckpt = load_checkpoint(run_dir / "checkpoints" / "latest.pt")  # weights_only=True
    assert "G_ema" in ckpt and ckpt["world_size"] == 2 and len(ckpt["rng_ranks"]) == 2
    assert not [p for p in tmp_path.iterdir() if p.name != "runs"]


def test_an_error_under_torchrun_is_one_line(data: Path, tmp_path: Path) -> None:
    """Rank 0 finds the mistake and says it; the other rank exits quietly."""
    _, err = run(
        torchrun("--data", str(data), *TINY, "--batch-size", "15", "--outdir", str(tmp_path)), code=1
    )
    lines = [x for x in err.splitlines() if "error:" in x and "facegan" in x]
    assert len(lines) == 1 and "--batch-size 15 is the global batch" in lines[0], err[-2000:]
    # no traceback of facegan's
    assert "facegan/cli/main.py" not in err and "facegan/training/loop.py" not in err


def _worker(launcher: int, rank: int) -> int | None:
    """The pid of the torchrun worker of `rank` (a child of the launcher with RANK=rank)."""
    for task in Path(f"/proc/{launcher}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                env = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"RANK={rank}".encode() in env:
                return int(child)
    return None


def _wait_for(what: Callable[[], object], proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while not what():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline, "timed out"
        time.sleep(0.005)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the worker to kill through /proc")
def test_sigkill_of_one_rank_restarts_the_group_and_ends_bit_identical(data: Path, tmp_path: Path) -> None:
    """torchrun --max-restarts 1 + --resume auto: one command line; rank 1 is SIGKILLed mid-run, torchrun
    restarts both ranks, they continue from the latest checkpoint, and the final training state (G, D,
    both optimizers, every rank's RNG streams) is bit-identical to an uninterrupted 2-rank run. The seed
    DCGAN (BatchNorm) with EMA and DiffAugment: per-rank statistics do not prevent exactness."""
    common = [
        "--data",
        str(data),
        *TINY,
        "--preset",
        "dcgan-plus",
        "--steps",
        "300",
        "--ckpt-every",
        "20",
        "--log-every",
        "10",
        "--sample-every",
        "1000",
        "--resume",
        "auto",
    ]
    reference = start(torchrun(*common, "--outdir", str(tmp_path / "a")))
    proc = start(torchrun(*common, "--outdir", str(tmp_path / "b"), launcher=("--max-restarts", "1")))
    _wait_for(lambda: list((tmp_path / "b").glob("*/checkpoints/ckpt-00000040.pt")), proc)
    victim = _worker(proc.pid, 1)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    _, err = finish(proc)
    finish(reference)
    assert "exitcode: -9" in err  # torchrun saw the kill and restarted the group (before the end)
    run_dir = only_run(tmp_path / "b")
    events = (run_dir / "stats.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in events] == list(range(10, 301, 10))  # none lost or doubled
    assert_same(latest(tmp_path / "b"), latest(tmp_path / "a"))
    assert len([p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith("ckpt-")]) == 3


def test_sigterm_to_the_group_saves_once_and_all_ranks_exit(data: Path, tmp_path: Path) -> None:
    """As a scheduler stops a job: SIGTERM to the launcher and both ranks at once."""
    runs = tmp_path / "runs"
    proc = start(
        torchrun(
            "--data", str(data), *TINY, "--steps", "100000", "--ckpt-every", "100000", "--outdir", str(runs)
        )
    )
    _wait_for(lambda: [p for p in runs.glob("*/stats.jsonl") if p.stat().st_size], proc)
    workers = [_worker(proc.pid, r) for r in (0, 1)]
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = finish(proc, code=None)  # torchrun's own status after a SIGTERM is its business
    assert err.count("SIGTERM: stopped at step") == 1, err[-3000:]
    for pid in workers:
        assert pid is not None and not Path(f"/proc/{pid}").exists()
    run_dir = only_run(runs)
    ckpts = [p.name for p in (run_dir / "checkpoints").iterdir() if p.name.startswith("ckpt-")]
    assert len(ckpts) == 1
    saved = load_checkpoint(run_dir / "checkpoints" / "latest.pt")["step"]
    assert ckpts == [f"ckpt-{saved:08d}.pt"] and saved > 0


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs (SyncBatchNorm: GPUs only)")
def test_sync_bn_two_gpus_equal_one_gpu(data: Path, tmp_path: Path) -> None:
    """With --sync-bn, BatchNorm normalises over the whole global batch, so 2 GPUs train as 1 does."""
    common = [
        "--data",
        str(data),
        *TINY,
        "--amp",
        "off",
        "--steps",
        "2",
        "--device",
        "cuda",
        "--ckpt-every",
        "1000",
        "--sample-every",
        "1000",
    ]
    run_all(
        one_process(*common, "--outdir", str(tmp_path / "one")),
        torchrun(*common, "--sync-bn", "--outdir", str(tmp_path / "two")),
    )
    one, two = latest(tmp_path / "one"), latest(tmp_path / "two")
    for net in ("G", "D"):
        assert max_diff(one[net], two[net]) < 1e-4, net
