"""Host memory while training from the packed dataset, measured in a fresh process."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.speed.env import sync
from bench.speed.runners import bench_config
from facegan.config.schema import ModelConfig, PerfConfig
from facegan.data.dataset import PackedDataset
from facegan.training.build import batch_source, build_training

ENTRY = Path(__file__).resolve().parents[1] / "throughput.py"  # the script that runs `memory_child`


def proc_memory() -> dict[str, int]:
    """Current and peak resident set in bytes (Linux /proc; ru_maxrss elsewhere)."""
    import resource

    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(value.split()[0]) * 1024
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out["ru_maxrss"] = maxrss if sys.platform == "darwin" else maxrss * 1024  # bytes on macOS, KiB on Linux
    return out


def memory_child(spec: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: RSS after imports, after building and warming the models, and after training.

    The warm-up step runs on an in-memory random batch so the allocator, oneDNN caches and Adam state
    are all in the "model" baseline before the packed dataset is touched. Then `train_steps` real steps
    run from the packed set and (where training the whole epoch would take too long, i.e. on CPU) the
    rest of the epoch's batches are drawn through the same data path, so every page of the memory map
    has been read once: the worst case of a full epoch.
    """
    mem: dict[str, Any] = {"import": proc_memory()}
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    bs = spec["batch_size"]
    # Built as `facegan train` builds it, but without data: the dataset is opened after the baseline.
    training = build_training(bench_config(ModelConfig(**spec["model"]), bs, PerfConfig()), device)
    mc, perf = training.cfg.model, training.perf
    warm = torch.rand(bs, mc.channels, mc.size, mc.size, device=device) * 2 - 1
    if perf.channels_last:
        warm = warm.contiguous(memory_format=torch.channels_last)
    training.step(0, warm)
    del warm
    sync(device)
    mem["model"] = proc_memory()

    t0 = time.perf_counter()
    ds = PackedDataset(spec["packed"])
    batches = training.batches = batch_source(training.cfg, ds, device)
    epoch = batches.steps_per_epoch
    train_steps = min(spec["train_steps"] or epoch, epoch)
    for s in range(train_steps):
        training.step(s)
    for s in range(train_steps, epoch):
        batches.batch(s)
    sync(device)
    mem["end"] = proc_memory()
    return {
        "array_bytes": int(ds.images.nbytes),
        "images": len(ds),
        "train_steps": train_steps,
        "data_only_batches": epoch - train_steps,
        "seconds": time.perf_counter() - t0,
        "rss": mem,
        "resident": perf.resident,
    }


def make_tiled_dataset(src: Path, out: Path, count: int) -> Path:
    """A packed dataset of `count` images made by repeating `src`'s array (memory behaviour only).

    The memory claim is about a full-size dataset (CelebA: 202,599 images, 2.49 GB at 64²); a memory
    map's RSS depends on the pages read, not on their content, so a tiled copy measures it faithfully.
    """
    ds = PackedDataset(src)
    per = int(np.prod(ds.images.shape[1:]))
    out.mkdir(parents=True)
    with open(out / "images.u8", "wb") as fh:
        left = count
        while left > 0:
            n = min(left, len(ds))
            fh.write(np.asarray(ds.images[:n]).tobytes())
            left -= n
    names = ds.manifest["files"]  # one entry per image, as PackedDataset checks; the split is left out
    files = [names[i % len(names)] for i in range(count)]
    manifest = {
        **{k: v for k, v in ds.manifest.items() if k != "split"},
        "count": count,
        "shape": [count, *ds.images.shape[1:]],
        "files": files,
        "source": f"{ds.manifest['source']} tiled to {count} images (bench only)",
        "content_hash": f"tiled:{ds.content_hash}",
    }
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert (out / "images.u8").stat().st_size == count * per
    return out


def run_memory(
    packed: Path,
    label: str,
    device: torch.device,
    mc: ModelConfig,
    batch_size: int,
    train_steps: int,
    threads: int | None = None,
) -> dict[str, Any]:
    """Run `memory_child` in a fresh interpreter (so earlier rows' memory is not in its peak)."""
    spec = {
        "packed": str(packed),
        "device": str(device),
        "model": asdict(mc),
        "batch_size": batch_size,
        "train_steps": train_steps,
        "threads": threads,
    }
    proc = subprocess.run(
        [sys.executable, str(ENTRY), "--memory-child", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"label": label, "error": f"memory child exited {proc.returncode}: {tail}"}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    rss, arr = res["rss"], res["array_bytes"]
    peak = rss["end"]["ru_maxrss"]
    model_peak = rss["model"]["ru_maxrss"]
    res.update(
        label=label,
        peak_rss=peak,
        peak_over_array=peak / arr,
        delta_over_array=(peak - model_peak) / arr,
        anon_growth=rss["end"].get("RssAnon", 0) - rss["model"].get("RssAnon", 0),
        file_growth=rss["end"].get("RssFile", 0) - rss["model"].get("RssFile", 0),
    )
    return res
