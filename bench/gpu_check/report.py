"""The check's two outputs: `gpu-check.json` (every figure, machine-readable) and `gpu-check.md` (the table
a person reads, the section BENCHMARKS.md takes). Both are rewritten whole after every row, through a
temporary file and a rename, so a run cut short leaves complete files with every finished row."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

# The JSON document's shape (JSON Schema draft 2020-12), checked by tests/bench/test_gpu_check.py.
ROW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["key", "part", "kind", "label", "status", "spec"],
    "properties": {
        "key": {"type": "string"},
        "part": {"type": "string"},
        "kind": {"enum": ["reference", "train", "generate", "serve", "torchrun"]},
        "label": {"type": "string"},
        "status": {"enum": ["ok", "partial", "error", "timeout", "skipped"]},
        "reason": {"type": "string"},
        "spec": {"type": "object"},
        "settings": {"type": "string"},
        "img_per_s": {"type": "number"},
        "windows": {"type": "array", "items": {"type": "number"}},
        "startup_s": {"type": "number"},
        "first_step_s": {"type": "number"},
        "warmup_s": {"type": "number"},
        "peak_mem_gib": {"type": "number"},
        "peak_mem_kind": {"type": "string"},
        "ratio_to_reference": {"type": ["number", "null"]},
        "gflop_per_img": {"type": ["number", "null"]},
        "pct_bf16_peak": {"type": ["number", "null"]},
        "latency_ms": {"type": "object", "required": ["p50", "p95"]},
        "wall_s": {"type": "number"},
    },
}
DOC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "schema",
        "command",
        "date",
        "smoke",
        "budget_s",
        "env",
        "data",
        "rows",
        "skipped",
        "fastest",
        "elapsed_s",
        "finished",
    ],
    "properties": {
        "schema": {"const": SCHEMA_VERSION},
        "command": {"type": "string"},
        "date": {"type": "string"},
        "smoke": {"type": "boolean"},
        "budget_s": {"type": "number"},
        "env": {"type": "object", "required": ["device", "torch", "cuda", "gpu_count", "bf16_peak_tflops"]},
        "data": {"type": "object", "required": ["description", "synthetic", "count"]},
        "rows": {"type": "array", "items": ROW_SCHEMA},
        "skipped": {"type": "array", "items": {"type": "object", "required": ["key", "reason"]}},
        "fastest": {"type": ["string", "null"]},
        "elapsed_s": {"type": "number"},
        "finished": {"type": "boolean"},
    },
}


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write(doc: dict[str, Any], out: Path) -> None:
    """Rewrite both files from `doc`."""
    _atomic_write(out / "gpu-check.json", json.dumps(doc, indent=1) + "\n")
    _atomic_write(out / "gpu-check.md", markdown(doc))


def _num(x: float | None, fmt: str = ",.0f") -> str:
    return "—" if x is None else format(x, fmt)


def markdown(doc: dict[str, Any]) -> str:
    """The table: one line per row, then the skipped rows and the environment."""
    env, data = doc["env"], doc["data"]
    mode = " (--smoke: tiny sizes on the CPU, not a measurement)" if doc["smoke"] else ""
    lines = [
        f"### GPU check{mode}",
        "",
        f"{env['device']}, torch {env['torch']}, CUDA {env['cuda'] or '—'}, {doc['date']}. "
        f"Data: {data['description']}. Command: `{doc['command']}`.",
        f"Budget {doc['budget_s']:.0f} s, used {doc['elapsed_s']:.0f} s"
        f"{'' if doc['finished'] else ' (still running or cut short)'}.",
        "",
        "| row | what | settings | train img/s (gen: faces/s) | × reference | start s | first step s "
        "(compile) | warm-up s | peak mem GiB | status |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["rows"]:
        rate = _num(r.get("img_per_s"))
        if r.get("latency_ms"):
            lat = r["latency_ms"]
            rate = f"p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms"
        status = r["status"] + (f": {r['reason']}" if r.get("reason") else "")
        lines.append(
            f"| {r['key']} | {r['label']} | {r.get('settings', '')} | {rate} | "
            f"{_num(r.get('ratio_to_reference'), '.2f')} | {_num(r.get('startup_s'), '.1f')} | "
            f"{_num(r.get('first_step_s'), '.1f')} | {_num(r.get('warmup_s'), '.1f')} | "
            f"{_num(r.get('peak_mem_gib'), '.2f')} | {status} |"
        )
    fastest = next((r for r in doc["rows"] if r["key"] == doc.get("fastest")), None)
    if fastest:
        lines += [
            "",
            f"Fastest training row: **{fastest['key']}** ({fastest['label']}), "
            f"{_num(fastest.get('img_per_s'))} img/s, {_num(fastest.get('ratio_to_reference'), '.2f')}"
            f"× the reference; {_num(fastest.get('gflop_per_img'), '.2f')} GFLOP per image "
            f"(FlopCounterMode, matmul/conv only) = "
            f"{_num(fastest.get('pct_bf16_peak'), '.2f')} % of the device's dense bf16 peak "
            f"({_num(env.get('bf16_peak_tflops'), '.0f')} TFLOP/s datasheet).",
        ]
    if doc["skipped"]:
        lines += ["", "Not run: " + "; ".join(f"{s['key']} ({s['reason']})" for s in doc["skipped"]) + "."]
    return "\n".join(lines) + "\n"
