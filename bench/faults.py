"""Fault harness: what survives SIGKILL, a full disk and hostile input. Anyone can run it on a CPU:

    OMP_NUM_THREADS=1 python bench/faults.py                 # all four parts, about 5-6 min on 2 cores
    python bench/faults.py --parts http                      # only (d), about 30 s
    python bench/faults.py --kills 3 --parts kill            # tests/bench/test_faults.py's reduced run

(a) kill: a tiny CPU run is SIGKILLed at N random moments (every 4th one right after a checkpoint's
    temp file appears, i.e. mid-write), resumed with `--resume auto` (or restarted when it died before
    its first checkpoint), and its final checkpoint compared with an uninterrupted run's: training
    state bit-identical or not; every file left in checkpoints/ must load.
(b) disk: a 16 MB tmpfs is filled, then a checkpoint, an export, a prepare and a metric-cache write are
    tried on it: each must fail in one clear line (or, for the cache, warn and carry on) and leave the
    old file intact. Skipped, with the reason, where `mount` is not permitted (needs root).
(c) input: hostile command lines, each counted as "clear" when it exits 2 with a single stderr line and
    no traceback.
(d) http: hostile HTTP requests (bad parameters, paths, methods, headers, framing, slow clients) against
    a real `facegan serve` on 127.0.0.1, each counted as "clear" when it gets a 4xx with a one-line
    reason and the server logs no traceback (bench/http_faults.py, which has the list).

Prints one line per check and a JSON summary (--json FILE writes it too). This file is the command and
part (a); the other parts are disk_faults.py, input_faults.py and http_faults.py, and what they share
is in fault_tools.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from facegan.networks.checkpoint import load_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # runnable as `python bench/faults.py` without installing anything
    sys.path.insert(0, str(REPO_ROOT))

from bench.disk_faults import disk_full  # noqa: E402
from bench.fault_tools import (  # noqa: E402
    ENV,
    TINY,
    corrupt_files,
    facegan,
    facegan_slow_disk,
    latest_run,
    run,
    same,
    temp_files,
    training_state,
)
from bench.input_faults import hostile_input  # noqa: E402

# ----------------------------------------------------------------------------- (a) SIGKILL and resume


def kill_resume(
    work: Path, kills: int = 20, seed: int = 0, steps: int = 100, ckpt_every: int = 10, say: Any = print
) -> dict[str, Any]:
    """SIGKILL a tiny run at `kills` random moments, resume each, compare with an uninterrupted run."""
    data = work / "data"
    if not data.is_dir():
        done = run(
            facegan("prepare", "synthetic", "--count", "256", "--size", "32", "--out", str(data), "--quiet")
        )
        assert done.returncode == 0, done.stderr
    train = [
        "train",
        "--data",
        str(data),
        *TINY,
        "--steps",
        str(steps),
        "--ckpt-every",
        str(ckpt_every),
        "--log-every",
        "5",
        "--sample-every",
        "100000",
        "--amp",
        "off",
        "--quiet",
    ]
    t0 = time.monotonic()
    ref = run(facegan(*train, "--outdir", str(work / "ref")))
    assert ref.returncode == 0, ref.stderr
    span = time.monotonic() - t0
    reference = training_state(work / "ref" / "00000-data-dcgan32" / "checkpoints" / "latest.pt")
    rng = random.Random(seed)
    identical, corrupt, stale, rows = 0, 0, 0, []
    for i in range(kills):
        out = work / f"kill{i:02d}"
        mid_write = i % 4 == 0
        delay = rng.uniform(0.5, span * 0.95)
        cmd = (facegan_slow_disk if mid_write else facegan)(*train, "--outdir", str(out))
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        start, how = time.monotonic(), "finished first"
        while proc.poll() is None:
            late = time.monotonic() - start >= delay
            if late and (not mid_write or any(out.glob("*/checkpoints/.ckpt-*.tmp-*"))):
                if mid_write:
                    time.sleep(0.05)  # inside the 0.3 s between the two halves
                proc.send_signal(signal.SIGKILL)
                how = "mid-write" if mid_write else f"at {time.monotonic() - start:.2f} s"
                break
            time.sleep(0.0005)
        proc.wait()
        killed = latest_run(out)
        at = load_checkpoint(killed / "checkpoints" / "latest.pt")["step"] if killed else None
        bad = corrupt_files(killed) if killed else []
        # What a user does next: resume; a run killed before its first checkpoint is started again.
        again = run(
            facegan("train", "--resume", "auto", "--outdir", str(out), "--quiet")
            if killed
            else facegan(*train, "--outdir", str(out))
        )
        final = latest_run(out)
        ok = (
            again.returncode == 0
            and final is not None
            and same(training_state(final / "checkpoints" / "latest.pt"), reference)
        )
        bad += corrupt_files(final) if final else ["no checkpoint"]
        left = temp_files(final) if final else []
        identical += ok
        corrupt += len(bad)
        stale += len(left)
        rows.append(
            {"kill": i, "how": how, "checkpoint_step": at, "identical": ok, "corrupt": bad, "temp_left": left}
        )
        say(
            f"kill {i + 1:2d}/{kills}: {how:>13}, last checkpoint step {at}, resumed "
            f"{'bit-identical' if ok else 'DIFFERENT'}, corrupt checkpoints {len(bad)}, temp files left "
            f"{len(left)}"
        )
        shutil.rmtree(out, ignore_errors=True)
    return {
        "kills": kills,
        "identical": identical,
        "corrupt_files": corrupt,
        "temp_files_left": stale,
        "steps": steps,
        "ckpt_every": ckpt_every,
        "reference_seconds": round(span, 1),
        "runs": rows,
    }


def _http_faults() -> Any:
    """bench/http_faults.py, part (d) (bench/ is a folder of scripts, not a package)."""
    import importlib.util

    path = Path(__file__).with_name("http_faults.py")
    spec = importlib.util.spec_from_file_location("bench_http_faults", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=20, help="SIGKILLs in part (a) (default 20)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    ap.add_argument("--parts", default="kill,disk,input,http", help="comma list of kill, disk, input, http")
    ap.add_argument("--work", help="working folder (default: a temporary one, removed after)")
    ap.add_argument("--json", help="also write the summary here")
    args = ap.parse_args(argv)
    parts = set(args.parts.split(","))
    summary: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        work = Path(args.work) if args.work else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        t0 = time.monotonic()
        if "kill" in parts or "disk" in parts or "input" in parts:
            summary["kill"] = kill_resume(work, kills=args.kills if "kill" in parts else 0, seed=args.seed)
        if "disk" in parts:
            summary["disk"] = disk_full(work)
        if "input" in parts:
            summary["input"] = hostile_input(work)
        if "http" in parts:
            summary["http"] = _http_faults().hostile_http()
        summary["seconds"] = round(time.monotonic() - t0, 1)
    print()
    if k := summary.get("kill"):
        print(
            f"kill: {k['identical']}/{k['kills']} bit-identical after resume, {k['corrupt_files']} corrupt "
            f"checkpoint files",
            end="; ",
        )
    if "input" in summary:
        print(f"input: {summary['input']['clear']}/{summary['input']['inputs']} one clear line", end="; ")
    if h := summary.get("http"):
        print(f"http: {h['clear']}/{h['requests']} clear 4xx, {h['server_errors_5xx']} 5xx", end="; ")
    print(f"{summary['seconds']} s")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
