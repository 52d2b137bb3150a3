"""Training on many processes with torchrun (CPU, gloo, 2 ranks): the same run whatever the world size.

Every multi-process test starts the real entry point, `python -m torch.distributed.run ... -m facegan
train`, on tiny models. What is checked: one 2-rank step equals the one-process step for a BatchNorm-free
config; the batches, latents and augmentations of a step do not depend on the number of ranks; a run
resumes from 2 ranks on 1 and from 1 on 2; a SIGKILLed rank under `--max-restarts 1` restarts the group
and ends bit-identical; SIGTERM to the group saves once; only rank 0 writes; mistakes are one line.
"""

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

from facegan.cli.main import main
from facegan.config.schema import GANConfig, ModelConfig
from facegan.data.dataset import BatchSource, PackedDataset
from facegan.data.prepare import prepare
from facegan.data.shard import Shard
from facegan.errors import FaceganError
from facegan.networks.checkpoint import load_checkpoint
from facegan.networks.factory import build_models
from facegan.training.distributed import check_run
from facegan.training.step import train_step
from tests.training.test_train import assert_same

TINY = ["--size", "32", "--latent-dim", "16", "--ngf", "8", "--ndf", "8", "--batch-size", "16", "--quiet"]
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
ENV = {
    k: v
    for k, v in os.environ.items()
    if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE")
}
ENV.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


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


def start(cmd: list[str]) -> subprocess.Popen:
    """`cmd` in its own session: a test that fails can end it and every worker it started."""
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, start_new_session=True
    )


def finish(proc: subprocess.Popen, code: int | None = 0) -> tuple[str, str]:
    """Wait (at most 4 minutes) for `proc`; its output, after checking its exit status unless None."""
    try:
        out, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert code is None or proc.returncode == code, err[-3000:]
    return out, err


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


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 synthetic 32px faces, prepared once for the module."""
    return prepare(
        "synthetic", tmp_path_factory.mktemp("data") / "faces", size=32, synthetic_count=64, quiet=True
    ).out


# ----------------------------------------------------------------------------- in one process


def test_a_step_trains_the_same_images_noise_and_augmentations_on_any_number_of_ranks(data: Path) -> None:
    """What rank r of N feeds G and D in a step is rows [r·B/N, (r+1)·B/N) of what one process feeds
    them: the real batch (order, flips), z and the DiffAugment parameters (with --diffaug-p, also which
    images each op reaches)."""
    ds = PackedDataset(data)
    model = ModelConfig(size=32, latent_dim=16, ngf=8, ndf=8)
    gan = GANConfig(diffaug="color,translation,cutout", loss="wgan-gp", d_norm="layer", diffaug_p=0.5)
    seen: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    for world in (1, 2, 4):
        seen[world] = []
        for rank in range(world):
            g, d = build_models(model, seed=0, gan=gan)
            z_in: list[torch.Tensor] = []
            d_in: list[torch.Tensor] = []
            g.register_forward_pre_hook(lambda _m, args, z_in=z_in: z_in.append(args[0].detach()))
            d.register_forward_pre_hook(lambda _m, args, d_in=d_in: d_in.append(args[0].detach()))
            batches = BatchSource(ds, 16, seed=0, device=torch.device("cpu"), hflip=True).shard(rank, world)
            opt_g = torch.optim.Adam(g.parameters())
            opt_d = torch.optim.Adam(d.parameters())
            shard = Shard(rank * 16 // world, 16 // world, 16) if world > 1 else None
            step = 5  # epoch 1: a fresh permutation
            train_step(
                g,
                d,
                opt_g,
                opt_d,
                batches.batch(step),
                torch.Generator().manual_seed(3),
                gan=gan,
                step=step,
                shard=shard,
            )
            seen[world].append((z_in[0], d_in[0]))  # G's z; D's first input: the augmented real batch
    for world in (2, 4):
        assert torch.equal(torch.cat([z for z, _ in seen[world]]), seen[1][0][0])
        assert torch.equal(torch.cat([x for _, x in seen[world]]), seen[1][0][1])


def test_indivisible_batch_and_sync_bn_on_cpu_are_one_line(
    data: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(
        FaceganError, match="--batch-size 16 is the global batch and must split evenly over the 3 ranks"
    ):
        check_run(16, False, 3, torch.device("cpu"))
    with pytest.raises(FaceganError, match="--sync-bn needs CUDA GPUs"):
        check_run(16, True, 2, torch.device("cpu"))
    check_run(16, True, 1, torch.device("cpu"))  # one process: already the whole batch's statistics
    # The launcher shortcut checks before it starts anything.
    assert (
        main(
            ["train", "--data", str(data), *TINY, "--nproc-per-node", "3", "--outdir", str(tmp_path / "runs")]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "must split evenly over the 3 ranks" in err[0], err
    assert not (tmp_path / "runs").exists()


def test_missing_rendezvous_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], data: Path, tmp_path: Path
) -> None:
    for key in ("MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", "--data", str(data), *TINY, "--steps", "1", "--outdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "MASTER_ADDR and MASTER_PORT are not" in err[0] and "torchrun" in err[0], err


def test_nproc_per_node_must_match_torchrun(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], data: Path, tmp_path: Path
) -> None:
    """A torchrun launch of a command line that says another number of processes."""
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")  # one rank: no process group needed for the check
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "1")
    argv = ["train", "--data", str(data), *TINY, "--nproc-per-node", "2", "--outdir", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--nproc-per-node 2, but torchrun started 1 processes" in err[0], err


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
