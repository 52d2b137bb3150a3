"""Helpers shared by the training tests: a tiny model and images, `facegan train` subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess

import torch

from facegan.config.schema import ModelConfig

# ----------------------------------------------------------------------------- tiny models


CFG = ModelConfig(size=32, latent_dim=16, ngf=8, ndf=8)


def images(seed: int = 0, n: int = 8) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ----------------------------------------------------------------------------- subprocesses


TINY = ["--size", "32", "--latent-dim", "16", "--ngf", "8", "--ndf", "8", "--batch-size", "16", "--quiet"]
ENV = {
    k: v
    for k, v in os.environ.items()
    if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE")
}
ENV.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


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
