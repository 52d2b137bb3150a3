"""Part (c) of the fault harness (bench/faults.py): hostile command lines and crafted files, each counted
as "clear" when `facegan` exits 2 with a single stderr line and no traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from bench.fault_tools import (
    TINY,
    facegan,
    one_clear_line,
    run,
)


def crafted_files(bad: Path) -> dict[str, Path]:
    """Hostile files a user may be handed (issue M): a .pt zip bomb, configs nested past the recursion
    limit, a YAML alias bomb, a checkpoint with step -5, and FIFOs where files belong."""
    import zipfile

    from safetensors.torch import save_file

    from facegan.config.schema import ModelConfig, RunConfig
    from facegan.networks.checkpoint import CONFIG_KEY, FORMAT, save_checkpoint
    from facegan.networks.factory import build_models

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
