"""The measurement matrix behind facegan's edits (docs/edits.md): which method finds them.

    # supervised, CelebA: InterFaceGAN (plain / conditional / refined) vs a conditional generator
    python bench/edit_methods.py supervised --data DATA --attrs list_attr_celeba.txt \
        --classifiers DIR [--find-half A] [--conditional cond.safetensors] --out DIR
    # the conditional-generator baseline (then: supervised --variants none --conditional cond.safetensors)
    python bench/edit_methods.py train-conditional --data DATA --attrs list_attr_celeba.txt --minutes 35 \
        --out cond.safetensors
    # unsupervised, any model: SeFa vs GANSpace
    python bench/edit_methods.py unsupervised --pretrained anime64 --data DATA --out DIR

Every figure is written to DIR/*.json as it is measured; times are wall-clock seconds on this machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facegan.data.dataset import resolve_dataset
from facegan.edits.classifier import classifier_for_half, labelled_faces, split_halves
from facegan.edits.evaluate import evaluate_edits, markdown, summary, to_u8
from facegan.edits.refine import ITERS as REFINE_ITERS
from facegan.edits.supervised import EVAL_SEED, Boundaries, fit_boundaries, package
from facegan.edits.unsupervised import ganspace, sefa, unnamed
from facegan.metrics.swd import swd
from facegan.sampling.directions import Directions
from facegan.sampling.generate import load_generator
from facegan.sampling.render import edit_faces
from facegan.sharing import pretrained

# Conditioning on the attributes that say who a face is: an edit should not change them.
IDENTITY = ["Male", "Young", "Eyeglasses"]
EDITS = [
    "Smiling",
    "Male",
    "Young",
    "Blond_Hair",
    "Black_Hair",
    "Eyeglasses",
    "Bangs",
    "Mouth_Slightly_Open",
    "Heavy_Makeup",
    "Pale_Skin",
]


def _save(out: Path, name: str, data: Any) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n")


def supervised(args: argparse.Namespace) -> None:
    out = Path(args.out)
    g = load_generator(pretrained.path(args.pretrained), amp="off")
    other = "B" if args.find_half == "A" else "A"
    cache = Path(args.classifiers)
    finder = classifier_for_half(
        args.data, args.attrs, args.find_half, cache=cache / f"cls{args.find_half}.safetensors"
    )
    if args.variants == "none":
        found: dict[str, tuple[Directions, float]] = {}
        return _measure(args, g, found, other, cache, out)
    saved = out / f"boundaries-find{args.find_half}.pt"
    if saved.is_file():  # the labelling pass is the slow part; the variants below reuse it
        bounds = Boundaries(**torch.load(saved))
    else:
        bounds = fit_boundaries(g, finder, args.samples)
        out.mkdir(parents=True, exist_ok=True)
        torch.save(bounds.__dict__, saved)
    print(
        f"fitted {len(finder.names)} boundaries on {args.samples} faces in {bounds.seconds:.0f}s", flush=True
    )
    found = {}
    variants = {  # (conditional, conditions, gradient refinement steps)
        "interfacegan": (False, None, 0),
        "interfacegan-cond-identity": (True, IDENTITY, 0),
        "interfacegan-cond-all": (True, None, 0),
        "interfacegan-refined": (False, None, REFINE_ITERS),
    }
    for variant in args.variants.split(","):
        conditional, conditions, refine_iters = variants[variant]
        name = f"{variant}-find{args.find_half}"
        start = time.perf_counter()
        dirs = package(
            g,
            finder,
            EDITS,
            bounds,
            conditional=conditional,
            conditions=conditions,
            refine_iters=refine_iters,
        )
        found[name] = (dirs, bounds.seconds + time.perf_counter() - start)
        dirs.save(out / f"{name}.edits.safetensors")
        print(name, "built", round(found[name][1]), "s", json.dumps(dirs.info["calibration"]), flush=True)
    if args.skip_eval:
        return
    _measure(args, g, found, other, cache, out)


def _measure(
    args: argparse.Namespace,
    g: torch.nn.Module,
    found: dict[str, tuple[Directions, float]],
    other: str,
    cache: Path,
    out: Path,
) -> None:
    measure = cache / f"cls{other}.safetensors"
    while args.wait and not measure.is_file():  # another process may still be training it
        time.sleep(20)
    measurer = classifier_for_half(args.data, args.attrs, other, cache=measure)
    images, _, _ = labelled_faces(args.data, args.attrs)
    a, b = split_halves(len(images))
    real = images[b if args.find_half == "A" else a]
    seeds = list(range(EVAL_SEED, EVAL_SEED + args.n))
    matrix = out / f"matrix-find{args.find_half}.json"
    rows: dict[str, Any] = json.loads(matrix.read_text()) if matrix.is_file() else {}
    for name, (dirs, built) in found.items():

        def render(s: list[int], e: dict[str, float], dirs: Directions = dirs) -> torch.Tensor:
            return edit_faces(g, dirs, s, e)

        res = evaluate_edits(render, EDITS, measurer, real, seeds)
        rows[name] = {"build_seconds": round(built, 1), **summary(res)}
        _save(out, name, {"build_seconds": built, "directions": dirs.info, **res})
        (out / f"{name}.md").write_text(markdown(res, f"{name}, measured by classifier {other}"))
        print(name, rows[name], flush=True)
        _save(out, f"matrix-find{args.find_half}", rows)
    if args.conditional:
        from facegan.edits.conditional import load_conditional

        cg = load_conditional(args.conditional)
        res = evaluate_edits(cg.render, [e for e in EDITS if e in cg.names], measurer, real, seeds)
        # Its unedited face is not celeba64's: how far G_c(z, c0) is from G(z) in the same embedding.
        plain = edit_faces(g, None, seeds, {})
        _, f0 = measurer.predict(plain)
        _, f1 = measurer.predict(cg.render(seeds, {}))
        between = float((f0 - f0.roll(1, 0)).norm(dim=1).mean())
        row = {
            **summary(res),
            "drift_from_celeba64_at_0": round(float((f1 - f0).norm(dim=1).mean()) / between, 3),
        }
        # Its own files: the directions' matrix may be written by another process at the same time.
        _save(out, f"conditional-generator-measure{other}", {"summary": row, **res})
        (out / f"conditional-generator-measure{other}.md").write_text(markdown(res, "conditional generator"))
        print("conditional", row, flush=True)


@torch.no_grad()
def unsupervised(args: argparse.Namespace) -> None:
    """SeFa vs GANSpace: build time, visible change, distinctness and SWD at ±1 of the top directions."""
    out = Path(args.out)
    g = load_generator(pretrained.path(args.pretrained), amp="off")
    ds = resolve_dataset(args.data, g.cfg.size, quiet=True)
    real = torch.from_numpy(np.asarray(ds.images[np.random.default_rng(0).choice(len(ds), args.n, False)]))
    seeds = list(range(EVAL_SEED, EVAL_SEED + args.n))
    base = edit_faces(g, None, seeds, {})
    rows: dict[str, Any] = {"swd_unedited": round(swd(real, to_u8(base))["swd"], 2)}
    for method, find in (("sefa", sefa), ("ganspace", ganspace)):
        start = time.perf_counter()
        vectors, _ = find(g, args.count)
        built = time.perf_counter() - start
        dirs = unnamed(vectors, args.step, method)
        change, quality, diffs = [], [], []
        for name in dirs.names:
            hi = edit_faces(g, dirs, seeds, {name: 1.0})
            lo = edit_faces(g, dirs, seeds, {name: -1.0})
            change.append(float((hi - lo).abs().mean()))
            quality.append((swd(real, to_u8(hi))["swd"] + swd(real, to_u8(lo))["swd"]) / 2)
            diffs.append((hi - lo).flatten(1))
        d = torch.stack(diffs)  # (K, N, P): per seed, what each direction changes
        d = d / d.norm(dim=2, keepdim=True).clamp_min(1e-8)
        cos = torch.einsum("anp,bnp->abn", d, d).abs().mean(2)
        off = cos[~torch.eye(len(cos), dtype=torch.bool)]
        overlap = [abs(float(x)) for x in (vectors @ vectors.T)[~torch.eye(len(vectors), dtype=torch.bool)]]
        rows[method] = {
            "build_seconds": round(built, 3),
            "mean_abs_change": round(float(np.mean(change)), 4),
            "change_per_direction": [round(c, 4) for c in change],
            "image_change_overlap": round(float(off.mean()), 3),
            "latent_overlap": round(float(np.mean(overlap)), 3),
            "swd_at_pm1": round(float(np.mean(quality)), 2),
            "swd_per_direction": [round(q, 2) for q in quality],
        }
        dirs.save(out / f"{args.pretrained}-{method}.edits.safetensors")
        print(method, rows[method], flush=True)
        _save(out, f"unsupervised-{args.pretrained}", rows)


def train_cond(args: argparse.Namespace) -> None:
    """The conditional-generator baseline: celeba64 fine-tuned with EDITS as conditions on half A."""
    from facegan.edits.conditional import train_conditional

    images, labels, names = labelled_faces(args.data, args.attrs)
    a, _ = split_halves(len(images))
    cols = [names.index(n) for n in EDITS]
    g = load_generator(pretrained.path("celeba64"), amp="off")
    res = train_conditional(
        g,
        images[a],
        labels[a][:, cols],
        EDITS,
        minutes=args.minutes,
        out=args.out,
        batch=args.batch,
        log_every=25,
        device=args.device,
    )
    print(json.dumps(res))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("supervised")
    s.add_argument("--pretrained", default="celeba64")
    s.add_argument("--data", required=True)
    s.add_argument("--attrs", required=True)
    s.add_argument("--classifiers", required=True, help="folder of clsA/clsB.safetensors (trained if absent)")
    s.add_argument("--find-half", choices=("A", "B"), default="A")
    s.add_argument("--conditional", help="a conditional generator from facegan.edits.conditional")
    s.add_argument("--samples", type=int, default=6000)
    s.add_argument(
        "--variants",
        default="interfacegan,interfacegan-refined,interfacegan-cond-identity,interfacegan-cond-all",
    )
    s.add_argument("--skip-eval", action="store_true", help="only build the directions")
    s.add_argument("--wait", action="store_true", help="wait for the measuring classifier's cache file")
    s.add_argument("--n", type=int, default=200)
    s.add_argument("--out", required=True)
    s.set_defaults(func=supervised)
    u = sub.add_parser("unsupervised")
    u.add_argument("--pretrained", default="anime64")
    u.add_argument("--data", required=True)
    u.add_argument("--count", type=int, default=10)
    u.add_argument("--step", type=float, default=3.0)
    u.add_argument("--n", type=int, default=128)
    u.add_argument("--out", required=True)
    u.set_defaults(func=unsupervised)
    c = sub.add_parser("train-conditional")
    c.add_argument("--data", required=True)
    c.add_argument("--attrs", required=True)
    c.add_argument("--minutes", type=float, default=35)
    c.add_argument("--batch", type=int, default=32)
    c.add_argument("--device", default="cpu", help="cpu or cuda: where the fine-tune runs")
    c.add_argument("--out", required=True)
    c.set_defaults(func=train_cond)
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
