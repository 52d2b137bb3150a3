"""The divergence guard: a NaN/inf loss or weight is never saved; the run rolls back and skips the
batches, lowers the learning rate or stops, as --on-nan says, and gives up after --nan-retries."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import facegan.training.build
from facegan.cli.main import main
from facegan.networks.checkpoint import load_checkpoint
from facegan.training.step import StepStats
from tests.training.test_train import TINY, assert_same_training_state, only_run

COMMON = [
    *TINY,
    "--steps",
    "24",
    "--log-every",
    "2",
    "--ckpt-every",
    "8",
    "--sample-every",
    "1000",
    "--quiet",
]


def inject(monkeypatch: pytest.MonkeyPatch, bad: Callable[[int, int], bool], how: str = "stats") -> list[int]:
    """Patch the step the loop runs (facegan.training.build's train_step): at step indices where
    `bad(step, call)` holds, return NaN stats ("stats") or poison one weight of G after the real step
    ("weight"). Returns the steps it ran."""
    real = facegan.training.build.train_step
    ran: list[int] = []

    def step_fn(g: torch.nn.Module, *args: Any, step: int, **kw: Any) -> StepStats:
        stats = real(g, *args, step=step, **kw)
        ran.append(step)
        if not bad(step, len(ran)):
            return stats
        if how == "weight":
            with torch.no_grad():
                weight = next(g.parameters())
                weight[(0,) * weight.dim()] = float("nan")
            return stats
        return StepStats(*(torch.full_like(s, float("nan")) for s in stats))

    monkeypatch.setattr(facegan.training.build, "train_step", step_fn)
    return ran


def all_checkpoints_finite(run: Path) -> None:
    files = list((run / "checkpoints").glob("*.pt"))
    assert files
    for path in files:
        ckpt = load_checkpoint(path)
        for key in ("G", "D"):
            assert all(torch.isfinite(t).all() for t in ckpt[key].values() if t.is_floating_point()), path


def test_nan_stats_roll_back_and_skip_the_batches(
    prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = inject(monkeypatch, lambda step, call: step == 10 and call < 15)  # once: a bad batch
    assert main(["train", "--data", str(prepared), *COMMON, "--outdir", str(tmp_path / "runs")]) == 0
    err = capsys.readouterr().err
    assert "became NaN/inf between steps 11 and 12" in err and "rolled back to step 8" in err
    run = only_run(tmp_path / "runs")
    all_checkpoints_finite(run)
    ckpt = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert ckpt["step"] == 24 and ckpt["guard"] == {"lr_scale": 1.0, "rollbacks": 1, "skip": [[11, 12]]}
    # Step index 10 made step 11 NaN; the check at step 12 rolled back to 8; the replay skips 11-12.
    assert ran == [*range(12), 8, 9, *range(12, 24)]
    steps = [json.loads(line)["step"] for line in (run / "stats.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6, 8, 10, 14, 16, 18, 20, 22, 24]  # no record of the bad window, none twice
    assert all(
        json.loads(line)["loss_d"] == json.loads(line)["loss_d"]  # no NaN was logged
        for line in (run / "stats.jsonl").read_text().splitlines()
    )


def test_poisoned_weight_lowers_the_lr_and_resume_stays_exact(
    prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rollback-lower-lr halves both learning rates; the scale is in the checkpoint, so a run stopped
    after the rollback and resumed ends bit-identical to one that ran straight through."""
    args = ["train", "--data", str(prepared), *COMMON, "--on-nan", "rollback-lower-lr"]
    fired: list[bool] = []

    def once(step: int, call: int) -> bool:
        if step == 12 and not fired:
            fired.append(True)
            return True
        return False

    inject(monkeypatch, once, how="weight")
    assert main([*args, "--outdir", str(tmp_path / "a")]) == 0
    reference = only_run(tmp_path / "a") / "checkpoints" / "latest.pt"
    ckpt = load_checkpoint(reference)
    assert ckpt["guard"] == {"lr_scale": 0.5, "rollbacks": 1, "skip": []}
    assert ckpt["opt_g"]["param_groups"][0]["lr"] == 1e-4 and ckpt["opt_d"]["param_groups"][0]["lr"] == 1e-4
    all_checkpoints_finite(only_run(tmp_path / "a"))

    fired.clear()
    assert main([*[a if a != "24" else "16" for a in args], "--outdir", str(tmp_path / "b")]) == 0
    run = only_run(tmp_path / "b")
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["guard"]["lr_scale"] == 0.5
    assert main(["train", "--resume", str(run), "--steps", "24", "--quiet"]) == 0
    assert_same_training_state(run / "checkpoints" / "latest.pt", reference)


@pytest.mark.parametrize(
    "policy,message",
    [
        ("rollback-skip", "after 2 rollback(s); gave up without saving it (--nan-retries 2)"),
        ("stop", "stopped without saving it (--on-nan stop)"),
    ],
)
def test_persistent_divergence_gives_up_in_one_line(
    prepared: Path,
    tmp_path: Path,
    policy: str,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    inject(monkeypatch, lambda step, call: step >= 9)  # every batch from step 10 on diverges
    code = main(
        [
            "train",
            "--data",
            str(prepared),
            *COMMON,
            "--on-nan",
            policy,
            "--nan-retries",
            "2",
            "--outdir",
            str(tmp_path / "runs"),
        ]
    )
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert code == 2 and len(errors) == 1 and message in errors[0] and "Traceback" not in err
    assert "ckpt-00000008.pt" in errors[0]
    run = only_run(tmp_path / "runs")
    all_checkpoints_finite(run)
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["step"] == 8


def test_nan_before_the_first_checkpoint_rolls_back_to_the_start(
    prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inject(monkeypatch, lambda step, call: step == 1 and call == 2)
    assert main(["train", "--data", str(prepared), *COMMON, "--outdir", str(tmp_path / "runs")]) == 0
    ckpt = load_checkpoint(only_run(tmp_path / "runs") / "checkpoints" / "latest.pt")
    assert ckpt["guard"]["skip"] == [[1, 2]] and ckpt["step"] == 24
