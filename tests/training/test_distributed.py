"""Many ranks checked in one process (facegan/training/distributed.py): a step's shares, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from facegan.cli.main import main
from facegan.config.schema import GANConfig, ModelConfig
from facegan.data.dataset import BatchSource, PackedDataset
from facegan.data.shard import Shard
from facegan.errors import FaceganError
from facegan.networks.factory import build_models
from facegan.training.distributed import check_run
from facegan.training.step import train_step
from tests.training.helpers import TINY

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
