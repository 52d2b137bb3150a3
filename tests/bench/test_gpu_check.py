"""bench/gpu_check: the budget cut-off, a row stopped at its limit, and the JSON/Markdown it writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from bench.gpu_check import report
from bench.gpu_check.cli import last_error, run_child, run_plan
from bench.gpu_check.plan import RESERVE_S, SMOKE_SIZES, Budget, RowSpec, make_rows
from bench.speed.staging import stage_data

REPO = Path(__file__).resolve().parents[2]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def empty_doc() -> dict[str, Any]:
    return {
        "schema": report.SCHEMA_VERSION,
        "command": "test",
        "date": "today",
        "smoke": True,
        "budget_s": 0.0,
        "env": {"device": "cpu", "torch": "x", "cuda": None, "gpu_count": 0, "bf16_peak_tflops": None},
        "data": {"description": "none", "synthetic": True, "count": 0},
        "rows": [],
        "skipped": [],
        "fastest": None,
        "elapsed_s": 0.0,
        "finished": False,
    }


def test_budget_shares_carry_unused_time_forward() -> None:
    clock = FakeClock()
    budget = Budget(100.0, parts=("reference", "default"), clock=clock)
    ref_share = budget.share("reference")
    assert ref_share + budget.share("default") == pytest.approx(100.0)  # the parts share the whole budget
    assert budget.limit("reference") == pytest.approx(ref_share)
    clock.now = 10.0
    budget.spend("reference", 10.0)
    # What the reference part left unused passes to the next part, within what is left overall.
    assert budget.limit("default") == pytest.approx(
        min(budget.share("default") + ref_share - 10.0, 90.0 - RESERVE_S)
    )
    assert budget.share("fastest") == 0.0  # a part without rows gets nothing


def test_plan_stops_starting_rows_when_the_budget_is_spent() -> None:
    """Every row runs within its limit, the limits never exceed what is left, and once the budget is
    nearly spent the remaining rows are skipped with a reason (and the files rewritten each time)."""
    clock = FakeClock()
    rows = make_rows(SMOKE_SIZES, smoke=True)
    budget = Budget(60.0, parts=tuple(dict.fromkeys(r.part for r in rows)), clock=clock)
    doc, limits, writes = empty_doc(), [], []

    def run_row(spec: RowSpec, limit: float) -> dict[str, Any]:
        assert limit <= 60.0 - clock.now - RESERVE_S + 1e-9
        limits.append(limit)
        clock.now += min(limit, 14.0)  # every row uses 14 s, or its whole limit
        return {"status": "ok", "img_per_s": 100.0 + len(limits), "windows": [1.0]}

    run_plan(rows, budget, doc, run_row, lambda spec: None, lambda: writes.append(len(doc["rows"])))
    ran = [r["key"] for r in doc["rows"] if r["key"] != "fastest"]
    skipped = [s["key"] for s in doc["skipped"]]
    assert ran and skipped, (ran, skipped)
    assert sorted(ran + skipped) == sorted(r.key for r in rows)  # each row ran or is named as skipped
    assert all(s["reason"].startswith("budget:") for s in doc["skipped"])
    assert clock.now <= 60.0
    assert len(writes) == len(rows)  # the report was rewritten after every row, run or skipped
    fastest = next(r for r in doc["rows"] if r["key"] == "fastest")  # added as the fastest part ended
    assert doc["fastest"] in ran and fastest["img_per_s"] == max(
        r["img_per_s"] for r in doc["rows"] if r["part"] in ("default", "fastest")
    )


def test_rows_this_machine_cannot_run_are_skipped_with_the_reason() -> None:
    rows = [r for r in make_rows(SMOKE_SIZES, smoke=True) if r.key in ("reference", "torchrun-2")]
    doc = empty_doc()
    run_plan(
        rows,
        Budget(300.0, parts=("reference", "torchrun")),
        doc,
        lambda spec, limit: {"status": "ok", "img_per_s": 1.0},
        lambda spec: "needs 2 GPUs" if spec.kind == "torchrun" else None,
        lambda: None,
    )
    assert [r["key"] for r in doc["rows"]] == ["reference"]
    assert doc["skipped"] == [{"key": "torchrun-2", "reason": "needs 2 GPUs"}]


def test_last_error_is_the_exception_line() -> None:
    stderr = "Traceback (most recent call last):\n  File x\nAssertionError: expected size 512\nsee docs\n"
    assert last_error(stderr, 1) == "AssertionError: expected size 512"
    assert last_error("", 3) == "exit code 3"


def test_a_row_stopped_at_its_limit_keeps_its_finished_windows(tmp_path: Path) -> None:
    staged = stage_data("synthetic:32", SMOKE_SIZES.size, tmp_path / "data")
    spec = next(r for r in make_rows(SMOKE_SIZES, smoke=True) if r.key == "default")
    endless = RowSpec(**{**spec.to_dict(), "windows": 10_000, "window_s": 0.1})
    import torch

    result = run_child(endless, 12.0, torch.device("cpu"), staged, tmp_path, tmp_path / "row.log")
    assert result["status"] == "partial" and "stopped at its 12 s limit" in result["reason"]
    assert len(result["windows"]) >= 1 and result["img_per_s"] > 0


@pytest.mark.slow
def test_smoke_writes_both_files_with_every_row(tmp_path: Path) -> None:
    """`python -m bench.gpu_check --smoke` (what CI runs): every row on the CPU, both files valid."""
    out = tmp_path / "out"
    subprocess.run(
        [sys.executable, "-m", "bench.gpu_check", "--smoke", "--out", str(out)],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=300,
    )
    doc = json.loads((out / "gpu-check.json").read_text())
    jsonschema.validate(doc, report.DOC_SCHEMA)
    assert doc["finished"] and doc["smoke"] and doc["data"]["synthetic"]
    rows = {r["key"]: r for r in doc["rows"]}
    expected = [r.key for r in make_rows(SMOKE_SIZES, smoke=True)] + ["fastest"]
    assert sorted(rows) == sorted(expected) and not doc["skipped"]
    assert all(r["status"] == "ok" for r in rows.values()), {k: r.get("reason") for k, r in rows.items()}
    assert rows["reference"]["ratio_to_reference"] == 1.0
    assert rows["fastest"]["img_per_s"] == max(
        r["img_per_s"] for r in rows.values() if r["part"] in ("default", "fastest")
    )
    assert rows["serve"]["latency_ms"]["p95"] >= rows["serve"]["latency_ms"]["p50"] > 0
    md = (out / "gpu-check.md").read_text()
    for key in ("reference", "default", "fastest"):
        assert f"| {key} |" in md
