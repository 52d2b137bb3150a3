"""The report: environment header, the table, the candidates, the targets, memory and profiles."""

from __future__ import annotations

import io
from typing import Any

import torch

from bench.speed.timing import Row, paired_ratio

FULL_CELEBA = 202_599  # images in the official img_align_celeba


def fmt_rate(x: float | None) -> str:
    """Images/s with thousands separators; one decimal below 100."""
    return "—" if x is None else (f"{x:,.0f}" if x >= 100 else f"{x:,.1f}")


def fmt_flops(x: float | None, device: torch.device) -> str:
    """Achieved FLOP/s in the table's unit: TFLOP/s on GPUs, GFLOP/s on CPUs."""
    if x is None:
        return "—"
    return f"{x / 1e12:,.1f}" if device.type == "cuda" else f"{x / 1e9:,.1f}"


def render(results: dict[str, Any], rows: list[Row], device: torch.device) -> str:
    """The report: environment header, the table, candidates, targets and memory."""
    env = results["env"]
    out = io.StringIO()
    w = out.write
    w("facegan throughput benchmark\n")
    w(f"  date        {env['date']}\n")
    cuda = f" (CUDA {env['cuda']}, cuDNN {env['cudnn']})" if env["cuda"] else ""
    w(f"  device      {env['device']}{cuda}\n")
    w(
        f"  cpu         {env['cpu_model']} (family {env['cpu_family']}), {env['cores']} cores available, "
        f"torch threads {env['torch_threads']}, kernels {env['cpu_capability']}\n"
    )
    w(
        f"  versions    python {env['python']}, torch {env['torch']}, torchvision {env['torchvision']}, "
        f"numpy {env['numpy']}, pillow {env['pillow']}\n"
    )
    la0, la1 = env["loadavg_start"], env.get("loadavg_end", ("?",) * 3)
    w(
        f"  load avg    start {la0[0]:.2f} {la0[1]:.2f} {la0[2]:.2f}; end "
        + " ".join(f"{x:.2f}" if isinstance(x, float) else str(x) for x in la1)
        + "\n"
    )
    w(
        f"  data        {results['data']['description']}: {results['data']['images']} images "
        f"(packed in {results['data']['prepare_s']:.1f} s, outside timing)\n"
    )
    mc = results["model"]
    w(
        f"  work unit   one training step of DCGAN-{mc['size']} (nz {mc['latent_dim']}, ngf {mc['ngf']}, "
        f"ndf {mc['ndf']}), batch {results['batch_size']}; {results['plan']['windows']} windows × "
        f"{results['plan']['steps']} steps (gen: × {results['plan']['gen_steps']} batches of "
        f"{results['gen_batch']}), medians\n"
    )
    fl = results["flops"]
    w(
        f"  FLOPs       reference step {fl['reference_step']:.3f} GFLOP/img, facegan step "
        f"{fl['facegan_step']:.3f} GFLOP/img (D frozen in the G step), G forward {fl['g_forward']:.3f}\n"
    )
    if device.type == "cpu":
        w(f"  peak        {env['cpu_peak_derivation']}\n")
        w(f"              {env['cpu_bf16_peak_derivation']} (the peak of bf16 rows)\n")
    w(f"  command     {env['command']}\n\n")

    a = next((r for r in rows if r.key == "a" and r.median), None)
    unit = "TFLOP/s" if device.type == "cuda" else "GFLOP/s"
    head = (
        f"{'row':<12} {'img/s':>9} {'(min–max)':>19} {'× a':>6} {'GFLOP/img':>9} {unit:>9} "
        f"{'% peak':>7} {'precision':>9}  settings"
    )
    w(head + "\n" + "-" * len(head) + "\n")
    for r in rows:
        if r.error:
            w(f"{r.key:<12} FAILED: {r.error}\n")
            continue
        rng = f"({fmt_rate(min(r.rates))}–{fmt_rate(max(r.rates))})"
        ratio = f"{r.median / a.median:.2f}" if a and r.median and not r.key.startswith("gen") else "—"
        pct = "n/a" if r.pct_peak is None else f"{r.pct_peak:.1f}%"
        ach = fmt_flops(r.achieved_flops, device)
        w(
            f"{r.key:<12} {fmt_rate(r.median):>9} {rng:>19} {ratio:>6} {r.gflop_per_img:>9.3f} {ach:>9} "
            f"{pct:>7} {r.precision:>9}  {r.label}: {r.settings}\n"
        )
    for r in rows:
        if r.warmup_s is not None and "compile" in r.settings and "eager" not in r.settings:
            w(f"  {r.key}: warm-up incl. torch.compile {r.warmup_s:.1f} s (excluded)\n")

    for title, key in (
        ("row c candidates (training)", "c_candidates"),
        ("gen-fastest candidates (inference)", "gen_candidates"),
    ):
        if results.get(key):
            w(f"\n{title}, probe of {results['plan']['probe_windows']} window(s):\n")
            for rec in results[key]:
                res = (
                    f"FAILED {rec['error']}"
                    if "error" in rec
                    else f"{fmt_rate(rec['probe_img_s'])} img/s, warm-up {rec['warmup_s']:.1f} s"
                )
                w(f"  {rec['precision']:>5} {rec['settings']:<58} {res}\n")

    w("\ntargets:\n")
    by = {r.key: r for r in rows if r.median}
    if "a" in by and device.type == "cpu":
        # Targets on a bf16-capable CPU (issue J): default ≥ 2×, fastest ≥ 2.5× the reference.
        for k, name, goal in (("f", "fp32", None), ("b", "default", 2.0), ("c", "fastest", 2.5)):
            if k not in by:
                continue
            ratio = by[k].median / by["a"].median
            paired = paired_ratio(by[k], by["a"])
            paired_s = "n/a" if paired is None else f"{paired:.2f}×"
            verdict = (
                "met"
                if goal and ratio >= goal
                else f"MISSED by {(goal - ratio) / goal * 100:.0f}%"
                if goal
                else ""
            )
            target = f"; target ≥ {goal}×: {verdict}" if goal else ""
            w(
                f"  CPU: facegan {name} / reference = {ratio:.2f}× (median of per-round ratios "
                f"{paired_s}{target})\n"
            )
    if device.type == "cuda":
        for k in ("b", "c"):
            if k in by:
                ips = by[k].median
                w(
                    f"  {k}: {ips:,.0f} img/s (target ≥ 50,000: {'met' if ips >= 50_000 else 'MISSED'}); "
                    f"202,599-image epoch {FULL_CELEBA / ips:.1f} s (target ≤ 4 s: "
                    f"{'met' if FULL_CELEBA / ips <= 4 else 'MISSED'})"
                )
                if "a" in by:
                    ratio = ips / by["a"].median
                    w(f"; {ratio:.1f}× reference (target ≥ 25×: {'met' if ratio >= 25 else 'MISSED'})")
                w("\n")
    for k in ("b", "c"):
        if k in by:
            w(f"  {k}: a {FULL_CELEBA:,}-image CelebA epoch would take {FULL_CELEBA / by[k].median:,.1f} s\n")

    for mem in results.get("memory", []):
        if "error" in mem:
            w(f"\nmemory ({mem['label']}): FAILED {mem['error']}\n")
            continue
        rss = mem["rss"]
        mb = 1e6
        w(
            f"\nmemory, {mem['label']}: packed array {mem['array_bytes'] / mb:,.1f} MB "
            f"({mem['images']:,} images); {mem['train_steps']} training steps + {mem['data_only_batches']} "
            f"data-only batches ({'device-resident' if mem['resident'] else 'memory map'})\n"
        )
        w(
            f"  RSS after imports {rss['import']['VmRSS'] / mb:,.0f} MB; peak after model + 1 warm step "
            f"{rss['model']['ru_maxrss'] / mb:,.0f} MB; peak while training {mem['peak_rss'] / mb:,.0f} MB\n"
        )
        w(
            f"  peak / array = {mem['peak_over_array']:.2f}×; (peak − model peak) / array = "
            f"{mem['delta_over_array']:.2f}× (target < 1.5×); growth: anonymous "
            f"{mem['anon_growth'] / mb:+,.1f} MB, "
            f"file-backed (the memory map) {mem['file_growth'] / mb:+,.1f} MB\n"
        )
    for name, table in results.get("profile", {}).items():
        w(f"\nprofile of one step, {name}:\n{table}\n")
    return out.getvalue()
