"""A reduced run of bench/faults.py part (a): SIGKILL at 3 moments (one mid checkpoint write), resume,
and compare with an uninterrupted run; plus the harness's disk-full filler and hostile-input verdicts."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

HARNESS = Path(__file__).resolve().parents[2] / "bench" / "faults.py"


def load_harness() -> ModuleType:
    """bench/ is a folder of scripts, not a package: import the file by path."""
    spec = importlib.util.spec_from_file_location("bench_faults", HARNESS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_three_sigkills_resume_bit_identical(tmp_path: Path) -> None:
    faults = load_harness()
    result = faults.kill_resume(tmp_path, kills=3, seed=1, steps=60, say=lambda line: None)
    assert result["runs"][0]["how"] == "mid-write"  # kill 0 lands between the two halves of a write
    assert result["identical"] == 3, result["runs"]
    assert result["corrupt_files"] == 0 and result["temp_files_left"] == 0, result["runs"]


def test_one_clear_line_verdict() -> None:
    from bench.fault_tools import one_clear_line  # what parts (b) and (c) judge refusals by

    def done(rc: int, err: str) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess([], rc, "", err)

    assert one_clear_line(done(2, "facegan train: error: bad\n"))
    assert not one_clear_line(done(1, "facegan train: error: bad\n"))
    assert not one_clear_line(done(2, "Traceback (most recent call last):\nOSError: x\n"))
    assert not one_clear_line(done(2, "warning\nfacegan train: error: bad\n"))


def test_next_save_removes_dead_writers_temp_files(tmp_path: Path) -> None:
    """A SIGKILL mid-write leaves `.ckpt-N.pt.tmp-PID`; the next save removes it unless PID still runs."""
    import torch

    from facegan.networks.checkpoint import save_checkpoint

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".ckpt-00000010.pt.tmp-{dead.pid}"
    live = tmp_path / f".ckpt-00000010.pt.tmp-{os.getppid()}"  # a running process: maybe mid-write
    stale.write_bytes(b"half a checkpoint")
    live.write_bytes(b"being written")
    save_checkpoint(tmp_path, {"step": 20, "G": {"w": torch.zeros(2)}}, 20, keep=2)
    assert not stale.exists() and live.exists()


def load_http_harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_http_faults", HARNESS.with_name("http_faults.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_http_reason_verdict() -> None:
    hf = load_http_harness()
    assert hf.reason_of("application/json", b'{"error": "seed must be >= 0"}') == "seed must be >= 0"
    assert hf.reason_of("text/html", b"<!doctype html><p>seed &lt;= 9</p><p>x</p>") == "seed <= 9"
    assert hf.reason_of("text/plain", b"Invalid HTTP request received.") == "Invalid HTTP request received."
    assert hf.reason_of("application/json", b'{"error": ""}') is None
    assert hf.reason_of("application/json", b'{"detail": [{"loc": ["query", "seed"]}]}') is None
    assert hf.reason_of("text/plain", b"Traceback (most recent call last):\n  File x") is None
    assert hf.reason_of("text/plain", b"line one\nline two") is None


# A cross-section of bench/http_faults.py's catalogue: one or two of each kind of mistake.
HTTP_SUBSET = (
    "face seed=-1",
    "face seed=2^63",
    "face seed=abc",
    "face size=1024",
    "face truncation=nan",
    "face model=<script>",
    "grid n=65",
    "grid seed=2^63-1&n=2",
    "walk frames=10^9",
    "walk no to",
    "page seed=-1",
    "path /../../etc/passwd",
    "path /%2e%2e/%2e%2e/etc/passwd",
    "path /%ff%fe",
    "method POST",
    "method TRACE",
    "garbage request line",
    "HTTP/1.1 without Host",
    "NUL in a header value",
    "Content-Length: -1",
    "Content-Length and chunked (smuggling)",
    "slow headers, never finished",
)


def test_hostile_http_requests_get_a_clear_4xx() -> None:
    """Against a real `facegan serve`: none is served, none gets a 5xx or a traceback in the server log,
    and the server still answers afterwards. Each that reaches the app gets a 4xx with a one-line reason;
    one the HTTP server refuses itself (a malformed head) gets its bare 4xx, and a client too slow to
    send its head is closed unanswered."""
    pytest.importorskip("hypercorn")
    hf = load_http_harness()
    chosen = [c for c in hf.cases() if c.name in HTTP_SUBSET]
    assert len(chosen) == len(HTTP_SUBSET)
    result = hf.hostile_http(chosen, say=lambda line: None)
    assert all(r["refused"] for r in result["rows"]), [r for r in result["rows"] if not r["refused"]]
    server_refused = {
        "garbage request line",
        "HTTP/1.1 without Host",
        "NUL in a header value",
        "Content-Length: -1",
        "slow headers, never finished",
    }
    unclear = [r for r in result["rows"] if not r["clear"] and r["request"] not in server_refused]
    assert not unclear, unclear
    assert result["server_errors_5xx"] == 0 and result["log_5xx"] == 0 and result["log_tracebacks"] == 0
    assert result["healthy_after"]


def test_soak_mode_reports_latency_errors_and_memory() -> None:
    """bench/serve_load.py --soak, for 3 s: the figures RELIABILITY.md's soak row is made of."""
    pytest.importorskip("hypercorn")
    spec = importlib.util.spec_from_file_location("bench_serve_load", HARNESS.with_name("serve_load.py"))
    assert spec is not None and spec.loader is not None
    serve_load = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(serve_load)
    lines: list[str] = []
    out = serve_load.soak(3, clients=1, workers=1, model="celeba64", warmup=1, say=lines.append)
    assert out["requests"] > 0 and out["unexpected"] == 0 and out["server_errors_5xx"] == 0
    assert out["server_alive_at_end"] and 100 < out["rss_before_mb"] <= out["rss_peak_mb"] < 10_000
    assert out["p50_ms"] <= out["p95_ms"] <= out["p99_ms"] <= out["max_ms"]
    assert len(lines) == 2  # one line for the (only) minute, one summary
