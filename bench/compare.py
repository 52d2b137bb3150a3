"""Does a candidate generator beat a baseline on every measure, beyond the noise of one draw?

    python bench/compare.py --data ../shared/data/img_align_celeba.zip \
        --baseline facegan/pretrained_models/celeba64.safetensors \
        --candidate runs/00003-.../checkpoints/ckpt-00012000.pt --draws 0 10000 20000

A snapshot picked as the best of many in-training evaluations is flattered by the draw it was picked
on. This measures both generators with `facegan evaluate`'s protocols (default swd,c2st,prdc) on
several draws — `--seed s` changes the generated faces, the SWD projections and the C2ST split and
classifier; the real subset and the PRDC embedding are fixed by the protocol — and applies a rule
fixed before looking at the numbers: the candidate **wins** a measure only if it is better in every
draw, and **beats** the baseline only if it wins every measure. Better means lower SWD, C2ST accuracy
closer to 0.5, and higher precision, recall, density and coverage. A measure where the two are equal
in some draw (C2ST at 1.000 for both, say) is not a win. Prints a markdown table and the verdicts;
`--json` writes every number. The exit status is 0 either way: the verdict is data, not an error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facegan.data.dataset import PackedDataset, resolve_dataset
from facegan.errors import FaceganError
from facegan.metrics import evaluate
from facegan.runtime.device import pick_device
from facegan.sampling.generate import load_generator

# The measures a comparison reads from evaluate's results, and which way is better: a key to a
# "badness" (lower is better), so the rule below needs one comparison.
MEASURES: dict[str, tuple[str, Callable[[float], float]]] = {
    "swd": ("SWD", lambda v: v),
    "c2st_acc": ("C2ST", lambda v: abs(v - 0.5)),
    "prdc_precision": ("precision", lambda v: -v),
    "prdc_recall": ("recall", lambda v: -v),
    "prdc_density": ("density", lambda v: -v),
    "prdc_coverage": ("coverage", lambda v: -v),
}


def badness(key: str, value: float) -> float:
    """The value on a lower-is-better scale (C2ST: distance from chance)."""
    return MEASURES[key][1](value)


def verdicts(baseline: list[dict[str, float]], candidate: list[dict[str, float]]) -> dict[str, str]:
    """Per measure present in both: "win" (candidate better in every draw), "loss" (worse in every
    draw) or "tie" (anything else, equal draws included); plus "beats": "yes" only if every measure
    is a win. `baseline[i]` and `candidate[i]` are the results of draw i."""
    if len(baseline) != len(candidate) or not baseline:
        raise ValueError("need the same, non-zero number of draws for both generators")
    keys = [k for k in MEASURES if all(k in r for r in baseline + candidate)]
    out: dict[str, str] = {}
    for k in keys:
        diffs = [badness(k, c[k]) - badness(k, b[k]) for b, c in zip(baseline, candidate, strict=True)]
        out[k] = "win" if all(d < 0 for d in diffs) else "loss" if all(d > 0 for d in diffs) else "tie"
    out["beats"] = "yes" if keys and all(out[k] == "win" for k in keys) else "no"
    return out


def table(
    names: Sequence[str], results: list[list[dict[str, float]]], draws: Sequence[int], verdict: dict[str, str]
) -> str:
    """Markdown: one row per generator and draw, then mean ± half the range, then the verdicts."""
    keys = [k for k in MEASURES if k in verdict]
    lines = [
        "| generator | draw | " + " | ".join(MEASURES[k][0] for k in keys) + " |",
        "|---|---|" + "---|" * len(keys),
    ]
    for name, per_draw in zip(names, results, strict=True):
        for seed, r in zip(draws, per_draw, strict=True):
            lines.append(f"| {name} | {seed} | " + " | ".join(f"{r[k]:.4g}" for k in keys) + " |")
    for name, per_draw in zip(names, results, strict=True):
        cells = []
        for k in keys:
            vals = [r[k] for r in per_draw]
            cells.append(f"{sum(vals) / len(vals):.4g} ± {(max(vals) - min(vals)) / 2:.2g}")
        lines.append(f"| {name} | mean | " + " | ".join(cells) + " |")
    lines.append("| candidate vs baseline | every draw | " + " | ".join(verdict[k] for k in keys) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = "generator: .safetensors, .pt checkpoint or run folder"
    ap.add_argument("--data", required=True, help="the data both were trained on (prepared, folder, .zip)")
    ap.add_argument("--baseline", required=True, help=source)
    ap.add_argument("--candidate", required=True, help=source)
    ap.add_argument(
        "--draws",
        type=int,
        nargs="+",
        default=[0, 10000, 20000],
        help="evaluate --seed values (default 0 10000 20000); 0 is the draw in-training "
        "evaluations use, so leave it out for a snapshot picked on it",
    )
    ap.add_argument("--metrics", default="swd,c2st,prdc", help="evaluate's protocols (default swd,c2st,prdc)")
    ap.add_argument("--num-fake", type=int, help="generated images per measure (default: the protocol's)")
    ap.add_argument("--device", default="cpu", help="cpu (default), auto, cuda, mps")
    ap.add_argument(
        "--amp",
        choices=("auto", "off", "bf16"),
        default="auto",
        help="inference precision, as facegan evaluate (default auto)",
    )
    ap.add_argument("--json", help="write every result and the verdicts here")
    args = ap.parse_args(argv)
    if len(set(args.draws)) != len(args.draws):
        ap.error("--draws must be distinct seeds")
    if min(args.draws) < 0:
        ap.error("--draws must be seeds >= 0")
    if args.json and not Path(args.json).resolve().parent.is_dir():
        # Checked before the evaluations, which take minutes, so their numbers are not lost at the end.
        ap.error(f"--json: folder {Path(args.json).parent} does not exist")

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    names = ("baseline", "candidate")
    results: list[list[dict[str, float]]] = []
    try:
        device = pick_device(args.device)
        dataset: PackedDataset | None = None
        for path in (args.baseline, args.candidate):
            g = load_generator(path, device, amp=args.amp)
            if dataset is None:
                dataset = resolve_dataset(args.data, g.cfg.size, quiet=True)
            results.append(
                [
                    evaluate(g, dataset, metrics, num_fake=args.num_fake, seed=s, device=device)
                    for s in args.draws
                ]
            )
    except FaceganError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    verdict = verdicts(*results)
    print(
        f"# baseline:  {args.baseline}\n# candidate: {args.candidate}\n# data: {args.data}, "
        f"draws (evaluate --seed): {' '.join(map(str, args.draws))}"
    )
    print(table(names, results, args.draws, verdict))
    print(f"candidate beats baseline on every measure in every draw: {verdict['beats']}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "baseline": args.baseline,
                    "candidate": args.candidate,
                    "data": args.data,
                    "draws": args.draws,
                    "metrics": metrics,
                    "results": dict(zip(names, results, strict=True)),
                    "verdict": verdict,
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
