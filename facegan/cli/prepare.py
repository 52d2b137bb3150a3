"""`facegan prepare` (pack a dataset) and `facegan plot` (redraw a run's curves): the verbs of data and
run folders."""

from __future__ import annotations

from pathlib import Path

from jsonargparse import Namespace

from facegan.cli.flags import Verb, verb_parser
from facegan.errors import FaceganError


def prepare_verb() -> Verb:
    p = verb_parser("prepare", description="Resize+center-crop images into a packed uint8 array + manifest.")
    p.add_argument(
        "source", nargs="?", type=str | None, help="image folder (recursive), .zip archive, or 'synthetic'"
    )
    p.add_argument("--out", type=str | None, help="output folder")
    p.add_argument("--size", type=int, default=64, help="32, 64 (default), 128 or 256")
    p.add_argument(
        "--min-side", type=int | None, help="skip images whose shorter side is smaller (default size/2)"
    )
    p.add_argument("--count", type=int, default=8192, help="images to draw for 'synthetic'")
    p.add_argument("--seed", type=int, default=0, help="seed for 'synthetic'")
    p.add_argument("--workers", type=int | None, help="decoding processes (default: all cores)")
    p.add_argument(
        "--holdout",
        type=float,
        default=0.1,
        help="fraction held out from training for metrics (default 0.1, at most 10,000 images; "
        "none below 100 images)",
    )
    p.add_argument("--split-seed", type=int, default=0, help="seed of the held-out split (default 0)")
    p.add_argument("--force", action="store_true", help="replace an existing prepared dataset")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--attributes",
        metavar="PATH",
        type=str | None,
        help="CelebA-format attribute file whose labels are kept with the images (default: a "
        "list_attr_celeba.txt in or beside the source, if there is one)",
    )
    p.add_argument("--no-attributes", action="store_true", help="do not look for an attribute file")
    return Verb("prepare", p, _cmd_prepare, required=("source", "out"))


def _cmd_prepare(args: Namespace) -> int:
    from facegan.data.prepare import prepare

    if args.attributes is not None and args.no_attributes:
        raise FaceganError("--attributes and --no-attributes contradict each other; pass one")
    res = prepare(
        args.source,
        args.out,
        args.size,
        min_side=args.min_side,
        synthetic_count=args.count,
        seed=args.seed,
        workers=args.workers,
        force=args.force,
        quiet=args.quiet,
        attributes=args.attributes,
        find_attrs=not args.no_attributes,
        holdout=args.holdout,
        split_seed=args.split_seed,
    )
    print(f"prepared {res.count} images of {args.size}x{args.size} into {res.out}")
    for line in res.notes:
        print(line)
    held = res.heldout_count
    print(
        f"held out {held} of them for metrics (seed {args.split_seed}; training leaves them out)"
        if held
        else "held out none (under 100 images, or --holdout 0): metrics will compare with training images"
    )
    if res.skipped:
        shown = "; ".join(f"{s['file']} ({s['reason']})" for s in res.skipped[:5])
        more = f" and {len(res.skipped) - 5} more" if len(res.skipped) > 5 else ""
        print(f"skipped {len(res.skipped)} files: {shown}{more} — all listed in {res.out}/manifest.json")
    return 0


def plot_verb() -> Verb:
    p = verb_parser("plot", description="Rebuild a run's curves and animation from its stats.jsonl.")
    p.add_argument("run", nargs="?", type=str | None, help="run folder")
    return Verb("plot", p, _cmd_plot, required=("run",))


def _cmd_plot(args: Namespace) -> int:
    from facegan.tracking import plots

    run = Path(args.run)
    if not (run / "stats.jsonl").is_file():
        raise FaceganError(f"{args.run!r} is not a run folder (no stats.jsonl)")
    for path in plots.rebuild(run):
        print(f"wrote {path}")
    return 0
