"""Measure each shipped model's display default: the variety (truncation) the page and the HTTP API
draw its faces at when a request names none.

For every model it measures `facegan evaluate --metrics prdc --truncation T` (the same function, in one
process so the face embedding and the real features are made once) at T = 1.0, 1.5, 2.0, 2.5 and the
full distribution, against the held-out split of data prepared with `facegan prepare ZIP --out DIR`,
and the same generated faces' PRDC in the seeded random ResNet-18 the model cards' figures were
measured in (facegan.metrics.prdc.RandomEmbedding). The trained face embedding is made blind to
contrast, brightness and saturation (its training jitters them), which is much of what truncation
changes; the random network sees them. The choice is the smallest T whose recall is within 10% of the
untruncated recall in both spaces, or the full distribution when none is: smaller t gives cleaner,
more alike faces, so this is the cleanest look that does not collapse the model's diversity.

    python bench/display_truncation.py --data celeba64=data/celeba64 --data anime64=data/anime64
    python bench/display_truncation.py --data anime64=data/anime64 --write   # store the choice

It prints a Markdown table per model (the model cards' "Display default" section) and, with --out,
writes the numbers as JSON; --write rewrites facegan/pretrained_models/<name>.display.yaml with the
chosen value and the hash of the weights it was measured on.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/display_truncation.py` from a clone
    sys.path.insert(0, str(REPO))

TRUNCATIONS: tuple[float | None, ...] = (1.0, 1.5, 2.0, 2.5, None)  # None: the full distribution
RECALL_KEPT = 0.9  # the default keeps at least this fraction of the untruncated recall, in both spaces
BATCH = 256


def measure(
    name: str, data: str, num_fake: int | None, seed: int, truncations: tuple[float | None, ...] = TRUNCATIONS
) -> list[dict[str, object]]:
    """One row per truncation: PRDC of the shipped model `name` against `data`'s held-out split, in the
    trained face embedding (as `facegan evaluate --metrics prdc`) and in the random ResNet-18."""
    import numpy as np
    import torch

    from facegan.data.dataset import resolve_dataset
    from facegan.metrics import evaluate
    from facegan.metrics.evaluate import fake_batches
    from facegan.metrics.measurement import real_batches
    from facegan.metrics.prdc import RandomEmbedding, embed, prdc
    from facegan.metrics.protocols import PROTOCOLS, real_indices
    from facegan.metrics.reference import embedding_for, reference
    from facegan.sampling.generate import load_generator
    from facegan.sharing import pretrained

    g = load_generator(pretrained.path(name))
    ds = resolve_dataset(data, g.cfg.size)
    ref = reference(ds, "heldout")  # refuses data prepared without a held-out split
    emb = embedding_for(ds, progress=True)
    n = num_fake or PROTOCOLS["prdc"].num_fake
    # The real rows `evaluate` uses for prdc, embedded once in the random network.
    real_rows = ref.rows[real_indices(len(ref.rows), PROTOCOLS["prdc"].max_real)]
    rand = RandomEmbedding()
    real_rand = embed(rand, real_batches(ds, real_rows, BATCH))
    rows: list[dict[str, object]] = []
    for t in truncations:
        # The faces `facegan evaluate --truncation t` measures (its own generator → uint8 path), made once
        # for both spaces; an image array is what `evaluate --fakes` measures.
        fakes = torch.cat(list(fake_batches(g, list(range(seed, seed + n)), BATCH, t))).numpy()
        res = evaluate(fakes, ds, ["prdc"], num_fake=n, embedding=emb)
        rnd = prdc(real_rand, embed(rand, torch.from_numpy(np.ascontiguousarray(fakes)).split(BATCH)))
        row: dict[str, object] = {
            "truncation": t,
            **{k: res[f"prdc_{k}"] for k in ("precision", "recall", "density", "coverage")},
            "close_pairs_ratio": res["prdc_close_pairs_ratio"],
            **{f"random_{k}": v for k, v in rnd.items()},
            "num_fake": n,
            "first_seed": seed,
            "num_real": len(real_rows),
        }
        rows.append(row)
        print(
            f"{name} t={t or 'full'}: face embedding P {row['precision']:.3f} R {row['recall']:.3f} "
            f"C {row['coverage']:.3f} close pairs {row['close_pairs_ratio']:.2f}; random ResNet-18 "
            f"P {rnd['precision']:.3f} R {rnd['recall']:.3f} C {rnd['coverage']:.3f}",
            flush=True,
        )
    return rows


def _f(row: dict[str, object], key: str) -> float:
    return float(str(row[key]))


def choose(rows: list[dict[str, object]]) -> float | None:
    """The smallest truncation whose recall is at least RECALL_KEPT × the untruncated one in the face
    embedding and in the random ResNet-18; None (the full distribution) when no truncation keeps that."""
    full = next(r for r in rows if r["truncation"] is None)
    kept = [
        _f(r, "truncation")
        for r in rows
        if r["truncation"] is not None
        and all(_f(r, k) >= RECALL_KEPT * _f(full, k) for k in ("recall", "random_recall"))
    ]
    return min(kept) if kept else None


def table(name: str, rows: list[dict[str, object]], chosen: float | None) -> str:
    full = next(r for r in rows if r["truncation"] is None)

    def recall(r: dict[str, object], key: str) -> str:
        return f"{_f(r, key):.3f} ({_f(r, key) / _f(full, key):.2f})"

    lines = [
        "| t | precision | recall (÷ full) | coverage | close-pair ratio "
        "| R18 precision | R18 recall (÷ full) | R18 coverage |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t = r["truncation"]
        label = "full (none)" if t is None else f"{t:g}"
        if t == chosen:
            label = f"**{label}: display default**"
        lines.append(
            f"| {label} | {_f(r, 'precision'):.3f} | {recall(r, 'recall')} | {_f(r, 'coverage'):.3f} "
            f"| {_f(r, 'close_pairs_ratio'):.2f} | {_f(r, 'random_precision'):.3f} "
            f"| {recall(r, 'random_recall')} | {_f(r, 'random_coverage'):.3f} |"
        )
    faces, first, reals = full["num_fake"], full["first_seed"], full["num_real"]
    head = f"{name}: {faces} generated faces (seeds from {first}) vs the {reals} held-out reals"
    return head + "\n\n" + "\n".join(lines)


def write_display(name: str, chosen: float | None, command: str) -> Path:
    """Rewrite the shipped model's display-default file (facegan/pretrained_models/<name>.display.yaml)."""
    from facegan.sharing import pretrained

    path = pretrained.path(name).with_name(name + pretrained.DISPLAY_SUFFIX)
    value = "full" if chosen is None else f"{float(chosen)}"
    path.write_text(
        f"# {name}'s display default: the variety (truncation t: latent components beyond ±t are\n"
        f"# redrawn) the page and the HTTP API draw its faces at when a request names none; `full` = none.\n"
        f"# `facegan generate`, facegan.load and torch.hub do not draw with it: they sample the full\n"
        f"# distribution unless given a truncation (facegan.load shows it as g.display_truncation).\n"
        f"# Chosen by measurement: the smallest t whose PRDC recall is within 10% of the untruncated one\n"
        f'# in the face embedding and in the random ResNet-18 (table in {name}.md, "Display default").\n'
        f"# Re-measure and rewrite this file with\n"
        f"#   {command}\n"
        f"truncation: {value}\n"
        f"# The weights it was measured on (sha256 of {name}.safetensors; tests/sharing/test_pretrained.py\n"
        f"# checks it, so new weights under this name are re-measured).\n"
        f"weights_sha256: {pretrained.weights_sha256(name)}\n"
    )
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data",
        action="append",
        metavar="NAME=DIR",
        help="a shipped model and its prepared data (with a held-out split); repeat for several "
        "(default: celeba64=data/celeba64 and anime64=data/anime64)",
    )
    p.add_argument(
        "--num-fake", type=int, help="generated faces per measurement (default: the prdc protocol's 2,000)"
    )
    p.add_argument("--seed", type=int, default=0, help="first seed of the generated faces (default 0)")
    p.add_argument("--out", type=Path, help="also write the numbers as JSON here")
    p.add_argument("--write", action="store_true", help="store each chosen default in its .display.yaml")
    args = p.parse_args(argv)
    pairs = args.data or ["celeba64=data/celeba64", "anime64=data/anime64"]
    report: dict[str, object] = {}
    for pair in pairs:
        name, _, data = pair.partition("=")
        if not data:
            p.error(f"--data {pair!r}: write NAME=DIR")
        rows = measure(name, data, args.num_fake, args.seed)
        chosen = choose(rows)
        report[name] = {"data": data, "rows": rows, "display_truncation": chosen}
        print()
        print(table(name, rows, chosen))
        shown = "full (no truncation)" if chosen is None else f"{chosen:g}"
        print(f"\n{name}: display default {shown}\n", flush=True)
        if args.write:
            extra = f" --num-fake {args.num_fake}" if args.num_fake else ""
            command = f"python bench/display_truncation.py --data {name}=DIR{extra} --write"
            print(f"wrote {write_display(name, chosen, command)}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
