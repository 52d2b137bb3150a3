"""A stop request during an evaluation in the training loop: the evaluation is abandoned within a batch
and the checkpoint written at once, instead of after the whole (possibly hour-long) evaluation."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from facegan.config.schema import ModelConfig
from facegan.metrics import evaluate
from facegan.networks.checkpoint import load_checkpoint
from facegan.networks.factory import build_models
from tests.training.test_train import TINY, only_run

# Runs `facegan train` with generation during evaluation slowed to 0.5 s per image (a 64-image C2ST
# then takes over 30 s), touching MARKER when the first evaluation starts.
SLOW_EVAL = """
import sys, time
from pathlib import Path
import facegan.metrics
ev = sys.modules["facegan.metrics.measurement"]  # where every metric draws its generated faces
real = ev.fake_batches

def slow(g, seeds, batch_size, truncation=None):
    Path(sys.argv[1]).touch()
    for seed in seeds:
        time.sleep(0.5)
        yield from real(g, [seed], 1, truncation)

ev.fake_batches = slow
from facegan.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def test_sigterm_during_evaluation_checkpoints_within_seconds(prepared: Path, tmp_path: Path) -> None:
    runs, marker = tmp_path / "runs", tmp_path / "eval-started"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SLOW_EVAL,
            str(marker),
            "train",
            "--data",
            str(prepared),
            *TINY,
            "--steps",
            "1000",
            "--eval-every",
            "3",
            "--ckpt-every",
            "1000",
            "--outdir",
            str(runs),
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.time() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.time() < deadline
        time.sleep(0.01)
    time.sleep(0.3)  # well inside the evaluation
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    waited = time.monotonic() - sent
    assert proc.returncode == 128 + signal.SIGTERM, err
    # The end-of-run figures and export still run (5-10 s on a busy 2-core machine: CI once measured
    # 10.1 s); the evaluation's remaining 64 × 0.5 s do not, or the exit would take over 30 s.
    assert waited < 20, f"exit took {waited:.1f} s after SIGTERM"
    run = only_run(runs)
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["step"] == 3
    assert not (run / "metrics.jsonl").exists()  # the abandoned evaluation recorded nothing


def test_evaluate_cancel_is_polled_between_batches(prepared: Path) -> None:
    from facegan.data.dataset import PackedDataset
    from facegan.metrics.evaluate import EvaluationCancelled

    g = build_models(ModelConfig(size=32, latent_dim=16, ngf=8, ndf=8))[0]
    calls: list[int] = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) > 2

    for metric in ("c2st", "swd", "prdc"):
        calls.clear()
        try:
            evaluate(g, PackedDataset(prepared), [metric], num_fake=32, batch_size=4, cancel=cancel)
        except EvaluationCancelled:
            pass
        else:
            raise AssertionError(f"{metric}: not cancelled")
        assert len(calls) == 3
