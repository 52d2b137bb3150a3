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

Prints one line per check and a JSON summary (--json FILE writes it too).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from facegan.errors import FaceganError
from facegan.networks.checkpoint import load_checkpoint

TINY = ["--size", "32", "--latent-dim", "16", "--ngf", "8", "--ndf", "8", "--batch-size", "16"]
ENV = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONUNBUFFERED": "1"}


def facegan(*args: str) -> list[str]:
    return [sys.executable, "-m", "facegan", *args]


# `facegan` on a slow disk: each checkpoint is written in two halves 0.3 s apart, so a kill "right after
# the temp file appears" really lands mid-write (a local SSD writes these small files in microseconds,
# faster than any poll). Nothing else changes: the bytes and the training are the same.
SLOW_DISK = """
import io, sys, time, torch
real = torch.save
def save(obj, fh, *a, **kw):
    if isinstance(fh, io.BufferedWriter) and ".tmp-" in getattr(fh, "name", ""):
        buf = io.BytesIO(); real(obj, buf, *a, **kw); data = buf.getvalue()
        fh.write(data[: len(data) // 2]); fh.flush(); time.sleep(0.3); fh.write(data[len(data) // 2:])
        return None
    return real(obj, fh, *a, **kw)
torch.save = save
from facegan.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def facegan_slow_disk(*args: str) -> list[str]:
    return [sys.executable, "-c", SLOW_DISK, *args]


def run(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=timeout)


def same(a: Any, b: Any) -> bool:
    """Bit-identical nested checkpoint contents (tensors by dtype and value)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(same, a, b))
    return bool(a == b)


def training_state(path: Path) -> dict[str, Any]:
    """The parts of a checkpoint that must match after a resume (not the writer's version stamps)."""
    ckpt = load_checkpoint(path)
    return {k: v for k, v in ckpt.items() if k not in ("facegan_version",)}


def corrupt_files(run_dir: Path) -> list[str]:
    """Names of checkpoints (ckpt-*.pt, latest.pt, best.pt) in checkpoints/ that do not load."""
    bad = []
    for path in sorted((run_dir / "checkpoints").glob("*.pt")):
        try:
            load_checkpoint(path)
        except FaceganError:
            bad.append(path.name)
    return bad


def temp_files(run_dir: Path) -> list[str]:
    """Temp files of interrupted writes still in checkpoints/ (the next save removes dead writers')."""
    return [p.name for p in (run_dir / "checkpoints").glob(".*.tmp-*")]


def latest_run(outdir: Path) -> Path | None:
    runs = sorted(p for p in outdir.glob("*") if (p / "checkpoints" / "latest.pt").is_file())
    return runs[-1] if runs else None


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


# ----------------------------------------------------------------------------- (b) disk full


def fill(folder: Path, leave: int = 0) -> Path:
    """Fill the file system of `folder` with one filler file, to the last byte but `leave`."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as fh:  # unbuffered: nothing left over to fail at close
        for size in (1 << 16, 4096, 1):
            try:
                while fh.write(b"\0" * size):
                    pass
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()


def one_clear_line(done: subprocess.CompletedProcess[str]) -> bool:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    return done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr


def disk_full(work: Path, say: Any = print) -> dict[str, Any]:
    mnt = work / "tmpfs"
    mnt.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        reason = (mounted.stderr.strip().splitlines() or ["mount failed"])[0]
        say(f"disk full: skipped — cannot mount a tmpfs here ({reason})")
        return {"skipped": reason}
    results: dict[str, Any] = {}
    try:
        data = work / "data"
        runs = mnt / "runs"
        first = run(
            facegan(
                "train",
                "--data",
                str(data),
                *TINY,
                "--steps",
                "4",
                "--ckpt-every",
                "2",
                "--keep-ckpts",
                "1",
                "--sample-every",
                "100000",
                "--num-samples",
                "4",
                "--outdir",
                str(runs),
                "--quiet",
            )
        )
        assert first.returncode == 0, first.stderr
        run_dir = next(runs.iterdir())
        latest, export = run_dir / "checkpoints" / "latest.pt", run_dir / "generator.safetensors"
        prepared = mnt / "prepared"
        first_prep = run(
            facegan(
                "prepare", "synthetic", "--count", "32", "--size", "32", "--out", str(prepared), "--quiet"
            )
        )
        assert first_prep.returncode == 0, first_prep.stderr
        prep_files = sorted(p for p in prepared.iterdir() if p.is_file())

        def attempt(name: str, cmd: list[str], keep: list[Path], leave: int = 0) -> None:
            before = digest(*keep)
            filler = fill(mnt, leave)
            try:
                done = run(cmd)
            finally:
                filler.unlink()
            intact = digest(*keep) == before
            clear = one_clear_line(done)
            results[name] = {
                "clear": clear,
                "intact": intact,
                "rc": done.returncode,
                "stderr": done.stderr.strip()[-300:],
            }
            say(
                f"disk full at {name}: exit {done.returncode}, "
                f"{'one clear line' if clear else 'NOT one clear line'}, old file "
                f"{'intact' if intact else 'DAMAGED'}: {done.stderr.strip().splitlines()[-1:]}"
            )

        # Room for the run folder's small writes (config, stats, TensorBoard), not for a checkpoint.
        attempt(
            "checkpoint",
            facegan("train", "--resume", str(run_dir), "--steps", "6", "--quiet"),
            [latest],
            leave=48 << 10,
        )
        attempt("run folder", facegan("train", "--resume", str(run_dir), "--steps", "6", "--quiet"), [latest])
        attempt("export", facegan("export", "--checkpoint", str(run_dir), "--out", str(export)), [export])
        attempt(
            "prepare",
            facegan(
                "prepare",
                "synthetic",
                "--count",
                "64",
                "--size",
                "32",
                "--out",
                str(prepared),
                "--force",
                "--quiet",
            ),
            prep_files,
        )
        results["metric-cache"] = _metric_cache_full(mnt, data, say)
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
    return results


def _metric_cache_full(mnt: Path, data: Path, say: Any) -> dict[str, Any]:
    """The real-feature cache on a full disk: the numbers are still returned, with one warning, and the
    cache file written before stays intact."""
    import warnings

    import numpy as np

    from facegan.data.dataset import PackedDataset
    from facegan.metrics.evaluate import real_stats

    class Features:
        extractor_id = "faults-harness-v1"  # a named extractor, so its features are cached

        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            return x.float().mean(dim=(2, 3))

    ds, cache = PackedDataset(data), mnt / "metric-cache"
    real_stats(ds, 64, Features(), cache_dir=cache)  # the old cache file
    old = sorted(p for p in cache.rglob("*") if p.is_file())
    before = digest(*old)
    filler = fill(mnt)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            stats = real_stats(ds, 128, Features(), cache_dir=cache)  # a new key: a new cache file
        ok = np.isfinite(stats.mu).all() and len(caught) == 1
    except Exception as err:  # any escape is the finding this records
        ok, caught = False, [type(err).__name__]
    finally:
        filler.unlink()
    intact = digest(*old) == before
    leftovers = [p.name for p in cache.rglob(".*.tmp-*")]  # facegan.storage.files.atomic_write's temp files
    say(
        f"disk full at metric cache: {'numbers returned with one warning' if ok else 'FAILED'}, old file "
        f"{'intact' if intact else 'DAMAGED'}, partial files left {len(leftovers)}"
    )
    return {"clear": bool(ok), "intact": intact, "partial_left": leftovers}


# ----------------------------------------------------------------------------- (c) hostile input


def crafted_files(bad: Path) -> dict[str, Path]:
    """Hostile files a user may be handed (issue M): a .pt zip bomb, configs nested past the recursion
    limit, a YAML alias bomb, a checkpoint with step -5, and FIFOs where files belong."""
    import zipfile

    from safetensors.torch import save_file

    from facegan.config.schema import ModelConfig, RunConfig
    from facegan.networks.checkpoint import CONFIG_KEY, FORMAT, save_checkpoint
    from facegan.networks.dcgan import build_models

    small = ModelConfig(size=32, latent_dim=16, ngf=8, ndf=8)
    g, d = build_models(small)
    state = {
        "format": FORMAT,
        "config": RunConfig(model=small).to_dict(),
        "step": 1,
        "G": g.state_dict(),
        "D": d.state_dict(),
    }
    out = {
        name: bad / name
        for name in (
            "bomb.pt",
            "deep.safetensors",
            "alias.yaml",
            "deep.yaml",
            "fifo.safetensors",
            "fifo.yaml",
        )
    }
    plain = bad / "plain.pt"
    torch.save({**state, "G": {"main.0.weight": torch.zeros(64 * 2**20)}}, plain)  # 256 MiB, deflated
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(out["bomb.pt"], "w") as zipped:
        for info in src.infolist():
            zipped.writestr(info.filename, src.read(info.filename), compress_type=zipfile.ZIP_DEFLATED)
    plain.unlink()
    save_file(
        {k: v.contiguous() for k, v in g.state_dict().items()},
        str(out["deep.safetensors"]),
        metadata={CONFIG_KEY: "[" * 100_000 + "]" * 100_000, "format": "facegan-generator"},
    )
    anchors = ['&a0 ["x","x","x","x","x","x","x","x","x"]']
    anchors += [f"&a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    out["alias.yaml"].write_text("model:\n  ngf: [" + ", ".join(anchors) + "]\n")  # 9^9 strings, 400 B
    out["deep.yaml"].write_text("model:\n  ngf: " + "[" * 100_000 + "]" * 100_000 + "\n")
    out["step.pt"] = save_checkpoint(bad / "step", {**state, "step": -5}, 1, keep=1)
    for name in ("fifo.safetensors", "fifo.yaml"):
        out[name].unlink(missing_ok=True)
        os.mkfifo(out[name])
    return out


def bad_inputs(work: Path) -> list[tuple[str, list[str]]]:
    """(name, argv) of hostile command lines, with the files they need made in `work`."""
    bad = work / "bad"
    bad.mkdir(parents=True, exist_ok=True)
    (bad / "random.pt").write_bytes(os.urandom(4096))
    (bad / "random.zip").write_bytes(os.urandom(4096))
    (bad / "random.safetensors").write_bytes(os.urandom(512))
    (bad / "empty").mkdir(exist_ok=True)
    (bad / "broken.yaml").write_text("model: [1\n")
    (bad / "types.yaml").write_text("model:\n  ngf: '64'\n")
    (bad / "huge.yaml").write_text("model:\n  ngf: 1000000\n")
    faces = bad / "faces"  # two small images for the attribute-file cases
    faces.mkdir(exist_ok=True)
    for i in range(2):
        Image.new("RGB", (48, 48), (40 * i, 90, 160)).save(faces / f"{i + 1:06d}.jpg")
    # The header names 2 attributes, the rows hold 3 values: every label would be wrong.
    (bad / "attrs.txt").write_text("2\nSmiling Male\n000001.jpg -1 1 1\n000002.jpg 1 1 -1\n")
    ref = next((work / "ref").glob("*/checkpoints/latest.pt"), None)
    data = str(work / "data")
    altered = bad / "altered"  # the prepared data with its stored shape changed, same byte count
    if (work / "data" / "manifest.json").is_file():
        altered.mkdir(exist_ok=True)
        shutil.copy(work / "data" / "images.u8", altered / "images.u8")
        man = json.loads((work / "data" / "manifest.json").read_text())
        man["shape"] = [man["count"] // 4, 12, man["size"], man["size"]]
        (altered / "manifest.json").write_text(json.dumps(man))
    cases: list[tuple[str, list[str]]] = [
        ("train --size 33", ["train", "--size", "33"]),
        ("train --ngf 1000000", ["train", "--ngf", "1000000", "--data", data]),
        ("train --batch-size 0", ["train", "--batch-size", "0"]),
        ("train --lr abc", ["train", "--lr", "abc"]),
        ("train --steps -5", ["train", "--steps", "-5"]),
        ("train --nan-retries -1", ["train", "--nan-retries", "-1"]),
        ("train --on-nan maybe", ["train", "--on-nan", "maybe"]),
        ("train --data missing", ["train", "--data", str(bad / "missing"), "--steps", "1"]),
        ("train --data empty folder", ["train", "--data", str(bad / "empty"), "--steps", "1"]),
        ("train --data random .zip", ["train", "--data", str(bad / "random.zip"), "--steps", "1"]),
        ("train --config missing", ["train", "--config", str(bad / "missing.yaml")]),
        ("train --config broken YAML", ["train", "--config", str(bad / "broken.yaml")]),
        ("train --config ngf: '64'", ["train", "--config", str(bad / "types.yaml")]),
        ("train --config ngf: 1000000", ["train", "--config", str(bad / "huge.yaml")]),
        ("train --resume missing", ["train", "--resume", str(bad / "missing.pt")]),
        ("train --resume random bytes", ["train", "--resume", str(bad / "random.pt")]),
        ("train --device cuda:7", ["train", "--device", "cuda:7", "--data", data, "--steps", "1"]),
        (
            "train --eval-metrics bogus",
            ["train", "--eval-every", "1", "--eval-metrics", "bogus", "--data", data, "--steps", "1"],
        ),
        ("generate --checkpoint random bytes", ["generate", "--checkpoint", str(bad / "random.pt")]),
        (
            "generate --checkpoint random .safetensors",
            ["generate", "--checkpoint", str(bad / "random.safetensors")],
        ),
        ("generate --seed x", ["generate", "--checkpoint", str(bad / "random.pt"), "--seed", "x"]),
        ("prepare missing.zip", ["prepare", str(bad / "missing.zip"), "--out", str(bad / "o1")]),
        ("prepare random .zip", ["prepare", str(bad / "random.zip"), "--out", str(bad / "o2")]),
        ("prepare empty folder", ["prepare", str(bad / "empty"), "--out", str(bad / "o3")]),
        ("prepare --size 31", ["prepare", "synthetic", "--size", "31", "--out", str(bad / "o4")]),
        (
            "prepare --attributes missing",
            ["prepare", str(faces), "--attributes", str(bad / "missing.txt"), "--out", str(bad / "o5")],
        ),
        (
            "prepare attribute header ≠ rows",
            ["prepare", str(faces), "--attributes", str(bad / "attrs.txt"), "--out", str(bad / "o6")],
        ),
        (
            "train --data with an altered shape",
            ["train", "--data", str(altered), *TINY, "--steps", "1", "--outdir", str(bad / "runs")],
        ),
        ("serve --checkpoint random bytes", ["serve", "--checkpoint", str(bad / "random.pt")]),
        ("plot not-a-run", ["plot", str(bad / "empty")]),
        (
            "evaluate --metrics bogus",
            ["evaluate", "--checkpoint", str(bad / "random.pt"), "--data", data, "--metrics", "bogus"],
        ),
        ("train --lr-g nan", ["train", "--lr-g", "nan"]),
        ("train --beta2 1.5", ["train", "--beta2", "1.5"]),
        ("train --ema-kimg inf", ["train", "--ema-kimg", "inf"]),
        ("train --outdir a file", ["train", "--outdir", str(bad / "random.zip"), "--steps", "1"]),
        ("generate --checkpoint ''", ["generate", "--checkpoint", ""]),
        ("unknown command", ["frobnicate"]),
        ("unknown flag", ["train", "--frobnicate"]),
        ("train --ngf 4096 --dry-run", ["train", "--ngf", "4096", "--dry-run"]),
        ("train --ngf 1024 --dry-run (64 px)", ["train", "--ngf", "1024", "--dry-run"]),
    ]
    crafted = crafted_files(bad)
    out = str(bad / "x.png")
    cases += [
        (
            "generate --checkpoint .pt zip bomb",
            ["generate", "--checkpoint", str(crafted["bomb.pt"]), "--out", out],
        ),
        (
            "generate --checkpoint config 10^5 deep",
            ["generate", "--checkpoint", str(crafted["deep.safetensors"]), "--out", out],
        ),
        (
            "generate --checkpoint FIFO",
            ["generate", "--checkpoint", str(crafted["fifo.safetensors"]), "--out", out],
        ),
        ("train --config YAML alias bomb", ["train", "--config", str(crafted["alias.yaml"]), "--dry-run"]),
        ("train --config YAML 10^5 deep", ["train", "--config", str(crafted["deep.yaml"]), "--dry-run"]),
        ("train --config FIFO", ["train", "--config", str(crafted["fifo.yaml"]), "--dry-run"]),
        (
            "train --resume step -5",
            ["train", "--resume", str(crafted["step.pt"]), "--outdir", str(bad / "runs")],
        ),
    ]
    if ref is not None:
        cases += [
            ("generate --n 0", ["generate", "--checkpoint", str(ref), "--n", "0"]),
            ("generate --n 10^9", ["generate", "--checkpoint", str(ref), "--n", "1000000000"]),
            ("generate --seed 0-10^12", ["generate", "--checkpoint", str(ref), "--seed", "0-1000000000000"]),
            ("generate --truncation -1", ["generate", "--checkpoint", str(ref), "--truncation", "-1"]),
            ("generate --truncation nan", ["generate", "--checkpoint", str(ref), "--truncation", "nan"]),
            (
                "evaluate --batch-size 0",
                [
                    "evaluate",
                    "--checkpoint",
                    str(ref),
                    "--data",
                    data,
                    "--metrics",
                    "swd",
                    "--batch-size",
                    "0",
                ],
            ),
            (
                "generate --interpolate one seed",
                [
                    "generate",
                    "--checkpoint",
                    str(ref),
                    "--interpolate",
                    "--seed",
                    "3",
                    "--out",
                    str(bad / "w.gif"),
                ],
            ),
            ("generate --out in /proc", ["generate", "--checkpoint", str(ref), "--out", "/proc/x/y.png"]),
            ("export --out .txt", ["export", "--checkpoint", str(ref), "--out", str(bad / "g.txt")]),
            ("train --resume with changed --ngf", ["train", "--resume", str(ref), "--ngf", "16"]),
            ("serve --port 99999", ["serve", "--checkpoint", str(ref), "--port", "99999"]),
        ]
    return cases


def hostile_input(work: Path, say: Any = print) -> dict[str, Any]:
    def attempt(argv: list[str]) -> tuple[bool, str, int | str]:
        try:
            done = run(facegan(*argv), timeout=120)
        except subprocess.TimeoutExpired:
            return False, "timed out after 120 s", "timeout"
        return one_clear_line(done), (done.stderr.strip().splitlines() or [""])[-1], done.returncode

    cases = bad_inputs(work)
    with ThreadPoolExecutor(2) as pool:  # two at a time: each is mostly interpreter start-up
        outcomes = list(pool.map(attempt, [argv for _, argv in cases]))
    clear, rows = 0, []
    for (name, _), (ok, line, rc) in zip(cases, outcomes):
        clear += ok
        rows.append({"input": name, "clear": ok, "rc": rc, "line": line[:200]})
        say(f"input {name:42} {'clear' if ok else 'NOT CLEAR'} (exit {rc}): {line[:110]}")
    return {"inputs": len(rows), "clear": clear, "rows": rows}


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
