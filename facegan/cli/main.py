"""Command line: `facegan prepare|train|generate|export|evaluate|plot|serve|directions|evaluate-edits`
(also `python -m facegan`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from facegan.cli.edits import (
    add_directions,
    add_evaluate_edits,
    add_generate_flags,
    generate_edited,
    wants_edits,
)
from facegan.cli.model_source import model_path as _model_path
from facegan.cli.train import add_train
from facegan.config.schema import INFERENCE_AMP, INFERENCE_AMP_DEFAULT
from facegan.errors import FaceganError


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line (not usage + error) and exits 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)


def _add_prepare(sub: Any) -> None:
    p = sub.add_parser(
        "prepare",
        help="pack images into a training-ready dataset",
        description="Resize+center-crop images into a packed uint8 array + manifest.",
    )
    p.add_argument("source", help="image folder (recursive), .zip archive, or 'synthetic'")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--size", type=int, default=64, help="32, 64 (default), 128 or 256")
    p.add_argument("--min-side", type=int, help="skip images whose shorter side is smaller (default size/2)")
    p.add_argument("--count", type=int, default=8192, help="images to draw for 'synthetic'")
    p.add_argument("--seed", type=int, default=0, help="seed for 'synthetic'")
    p.add_argument("--workers", type=int, help="decoding processes (default: all cores)")
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
        help="CelebA-format attribute file whose labels are kept with the images (default: a "
        "list_attr_celeba.txt in or beside the source, if there is one)",
    )
    p.add_argument("--no-attributes", action="store_true", help="do not look for an attribute file")
    p.set_defaults(func=_cmd_prepare)


def _cmd_prepare(args: argparse.Namespace) -> int:
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


def _add_model_source(p: argparse.ArgumentParser, fakes: bool = False) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    if fakes:
        src.add_argument(
            "--fakes",
            help="a folder or .zip of images to measure instead of a generator "
            "(any generator's output, or a perturbed real set)",
        )
    src.add_argument(
        "--checkpoint",
        help="training checkpoint (.pt), run folder, exported generator (.safetensors) or Hub-layout folder",
    )
    src.add_argument("--pretrained", help="a generator shipped with facegan: celeba64, anime64")


def _add_inference_amp(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--amp",
        choices=INFERENCE_AMP,
        default=INFERENCE_AMP_DEFAULT,
        help="inference precision: off (default: exact fp32, the same pixels as the Python API, "
        "torch.hub and the page), auto (bf16 + channels_last on CUDA and on CPUs with native "
        "bf16, fp32 elsewhere), bf16",
    )


def _add_generate(sub: Any) -> None:
    p = sub.add_parser("generate", help="generate faces from a checkpoint or exported generator")
    _add_model_source(p)
    p.add_argument("--n", type=int, default=64, help="number of faces (default 64)")
    p.add_argument(
        "--seed",
        default="0",
        help="first seed (faces use seed..seed+n-1), or exact seeds: 7 | 0-63 | 1,5,9-12",
    )
    p.add_argument("--out", default="grid.png", help="a .png for one grid, or a folder for one PNG per face")
    p.add_argument("--nrow", type=int, help="faces per grid row")
    p.add_argument(
        "--truncation",
        type=float,
        help="redraw latent components beyond this magnitude (>= 0.2, e.g. 1.0): less variety, "
        "fewer broken faces",
    )
    p.add_argument(
        "--interpolate",
        action="store_true",
        help="write a latent walk through the --seed list as a .gif/.mp4 instead of stills",
    )
    p.add_argument("--frames", type=int, default=24, help="frames per leg of an --interpolate walk")
    p.add_argument("--display-size", type=int, help="upscale walk frames to this many pixels")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, mps")
    _add_inference_amp(p)
    add_generate_flags(p)
    p.set_defaults(func=_cmd_generate)


def _check_generate_args(args: argparse.Namespace, seeds: list[int]) -> list[int]:
    """Refuse bad `generate` flags before a model is loaded (one line each); returns `seeds`."""
    from facegan.sampling.generate import ANIMATION_SUFFIXES, MAX_DISPLAY_SIZE, MAX_FACES, MAX_SEED

    if not 1 <= args.n <= MAX_FACES:  # every face is held in memory at once
        raise FaceganError(f"--n must be between 1 and {MAX_FACES:,}, got {args.n}")
    if len(seeds) == 1 and not args.interpolate and seeds[0] + args.n - 1 > MAX_SEED:
        raise FaceganError(f"--seed {seeds[0]} with --n {args.n} runs past the last seed, {MAX_SEED}")
    if args.nrow is not None and args.nrow < 1:
        raise FaceganError(f"--nrow must be >= 1, got {args.nrow}")
    if args.display_size is not None and not 1 <= args.display_size <= MAX_DISPLAY_SIZE:
        raise FaceganError(
            f"--display-size must be between 1 and {MAX_DISPLAY_SIZE} pixels, got {args.display_size}"
        )
    if not args.interpolate and Path(args.out).suffix.lower() in ANIMATION_SUFFIXES:
        raise FaceganError(
            f"--out {args.out!r} is an animation; add --interpolate (and --seed A,B,...) "
            f"for a latent walk, or give a .png for a grid or a folder for one PNG per face"
        )
    return seeds


def _cmd_generate(args: argparse.Namespace) -> int:
    from facegan.runtime.device import pick_device
    from facegan.sampling.generate import (
        faces,
        interpolation,
        load_generator,
        parse_seeds,
        write_faces,
        write_walk,
    )

    seeds = _check_generate_args(args, parse_seeds(args.seed))
    g = load_generator(_model_path(args), pick_device(args.device), amp=args.amp)
    if wants_edits(args):  # --edit, --edit-sweep, --list-edits (facegan/cli_edits.py)
        if len(seeds) == 1 and not args.interpolate:
            seeds = list(range(seeds[0], seeds[0] + args.n))
        return generate_edited(args, g, seeds)
    if args.interpolate:
        out = args.out if args.out != "grid.png" else "walk.gif"
        path = write_walk(interpolation(g, seeds, args.frames, args.truncation), out, args.display_size)
        print(f"wrote a walk through seeds {', '.join(map(str, seeds))} to {path}")
        return 0
    if len(seeds) == 1:  # a single seed starts a run of n consecutive faces
        seeds = list(range(seeds[0], seeds[0] + args.n))
    paths = write_faces(faces(g, seeds, truncation=args.truncation), seeds, args.out, nrow=args.nrow)
    where = paths[0] if len(paths) == 1 else Path(args.out)
    print(f"wrote {len(seeds)} faces (seeds {seeds[0]}..{seeds[-1]}) to {where}")
    return 0


def _add_export(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="export the generator alone: .safetensors, a Hugging Face Hub folder, or ONNX",
        description="Export the generator (the EMA one when the run has it) for sharing.",
    )
    _add_model_source(p)
    p.add_argument(
        "--out", required=True, help="a .safetensors file, a folder for --format hub, or a .onnx file"
    )
    p.add_argument(
        "--format",
        choices=("safetensors", "hub", "onnx"),
        help="safetensors (weights + config in one file), hub (config.json, model.safetensors and "
        "a README.md model card: the Hugging Face Hub layout; needs facegan[hub]) or onnx "
        "(dynamic batch; needs facegan[onnx]); default: onnx for a .onnx --out, else "
        "safetensors",
    )
    p.add_argument(
        "--half",
        action="store_true",
        help="store the weights as float16 (half the file, e.g. under a size limit; loads back to "
        "float32, faces equal to within float16 rounding); safetensors and hub only",
    )
    p.add_argument(
        "--license",
        help="Hub licence id for the model card (e.g. mit, cc-by-nc-4.0, other); "
        "the weights carry the training data's licence",
    )
    p.add_argument(
        "--dataset",
        action="append",
        default=[],
        metavar="ID",
        help="Hub dataset id the model was trained on, for the model card; repeat for several",
    )
    p.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    from facegan.api import export
    from facegan.sampling.generate import load_generator

    fmt = args.format or ("onnx" if Path(args.out).suffix == ".onnx" else "safetensors")
    if fmt != "hub" and (args.license or args.dataset):
        raise FaceganError("--license and --dataset describe a Hub model card; use them with --format hub")
    g = load_generator(_model_path(args))
    path = export(
        g,
        args.out,
        fmt,
        source=args.pretrained or args.checkpoint,
        license=args.license,
        datasets=args.dataset,
        half=args.half,
    )
    print(f"exported generator ({g.cfg.size}px, latent {g.cfg.latent_dim}) as {fmt} to {path}")
    return 0


def _add_plot(sub: Any) -> None:
    p = sub.add_parser("plot", help="rebuild a run's curves and animation from stats.jsonl")
    p.add_argument("run", help="run folder")
    p.set_defaults(func=_cmd_plot)


def _cmd_plot(args: argparse.Namespace) -> int:
    from facegan.tracking import plots

    run = Path(args.run)
    if not (run / "stats.jsonl").is_file():
        raise FaceganError(f"{args.run!r} is not a run folder (no stats.jsonl)")
    for path in plots.rebuild(run):
        print(f"wrote {path}")
    return 0


def _add_evaluate(sub: Any) -> None:
    p = sub.add_parser(
        "evaluate",
        help="measure a generator: FID/KID (Inception) or C2ST (no download)",
        description="Compare generated faces with a dataset's held-out real images under named protocols.",
    )
    _add_model_source(p, fakes=True)
    p.add_argument("--data", required=True, help="prepared dataset folder, image folder, .zip or 'synthetic'")
    p.add_argument(
        "--metrics",
        help="comma list of fid2k, fid10k, fid50k, kid2k, kid10k, c2st, swd, prdc "
        "(default: fid10k when the Inception weights are found, else c2st)",
    )
    p.add_argument(
        "--truncation",
        type=float,
        help="measure truncated sampling (as generate --truncation); default: full distribution",
    )
    p.add_argument("--num-fake", type=int, help="override the protocols' generated count (quick checks)")
    p.add_argument("--seed", type=int, default=0, help="first seed of the generated faces (default 0)")
    p.add_argument(
        "--inception-weights",
        help="path to pt_inception-2015-12-05-6726825d.pth (or set FACEGAN_INCEPTION_WEIGHTS)",
    )
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, mps")
    p.add_argument("--batch-size", type=int, default=256, help="images per forward pass (default 256)")
    p.add_argument("--run-dir", help="append the results to this run's metrics.jsonl")
    p.add_argument(
        "--real-split",
        default="auto",
        choices=("auto", "heldout", "train", "all"),
        help="real images to compare with: auto (default: the held-out split, or all images for "
        "data prepared without one), heldout, train, all (the usual published-FID protocol)",
    )
    p.add_argument(
        "--embedding",
        help="face embedding (.safetensors) for prdc and --nearest (default: the one shipped or "
        "cached for this data, else trained now on its training split)",
    )
    p.add_argument(
        "--nearest",
        type=int,
        metavar="N",
        help="also write N fakes beside their nearest training and held-out faces (memorisation "
        "check) into --nearest-out",
    )
    p.add_argument("--nearest-out", default="nearest", help="folder for --nearest (default ./nearest)")
    _add_inference_amp(p)
    p.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from facegan.data.dataset import resolve_dataset
    from facegan.metrics import append_metrics, evaluate, resolve_weights
    from facegan.metrics.protocols import readings
    from facegan.metrics.reference import embedding_for, load_fakes, reference
    from facegan.runtime.device import pick_device
    from facegan.sampling.generate import load_generator

    if args.fakes and (args.truncation is not None or args.run_dir):
        raise FaceganError("--truncation and --run-dir describe a generator; leave them out with --fakes")
    if args.nearest is not None and args.nearest < 2:
        raise FaceganError(f"--nearest must be >= 2, got {args.nearest}")
    device = pick_device(args.device)
    not_computed: dict[str, str] = {}
    if args.metrics:
        metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    else:
        try:
            resolve_weights(args.inception_weights)
            metrics = ["fid10k"]
        except FaceganError as err:
            metrics = ["c2st"]  # offline and no weights: the download-free measure, under its own name
            not_computed["fid10k"] = f"not computed: {err}"
    if args.fakes:
        ds = _dataset_any_size(args.data)
        source: Any = load_fakes(args.fakes, ds.size)
    else:
        source = load_generator(_model_path(args), device, amp=args.amp)
        ds = resolve_dataset(args.data, source.cfg.size)
    ref = reference(ds, args.real_split)  # bad split: one line, before any work
    emb = (
        embedding_for(ds, args.embedding, progress=True)
        if (args.nearest or any(m.lower() == "prdc" for m in metrics))
        else None
    )
    results = evaluate(
        source,
        ds,
        metrics,
        num_fake=args.num_fake,
        seed=args.seed,
        device=device,
        inception_weights=args.inception_weights,
        batch_size=args.batch_size,
        progress=True,
        truncation=args.truncation,
        real_split=args.real_split,
        embedding=emb,
    )
    if args.nearest:
        from facegan.metrics.evaluate import fake_batches
        from facegan.metrics.nearest import nearest_check

        assert emb is not None
        n = min(args.nearest, len(source)) if args.fakes else args.nearest
        first = 0 if args.fakes else args.seed
        fakes = torch_cat_numpy(
            fake_batches(source, list(range(first, first + n)), args.batch_size, args.truncation)
        )
        results.update(nearest_check(fakes, ds, emb, args.nearest_out))
    named = str(args.pretrained or args.checkpoint)
    what = {"fakes": str(args.fakes)} if args.fakes else {"generator": named}
    print(
        json.dumps(
            {
                **what,
                "data": str(args.data),
                "real_split": ref.split,
                "real_images": ref.note,
                **results,
                **not_computed,
                "readings": readings(results),
            }
        )
    )
    if args.nearest:
        print(f"wrote {args.nearest_out}/nearest.png and nearest.json")
    if args.run_dir:
        from facegan.networks.checkpoint import load_checkpoint

        ckpt = Path(_model_path(args))
        step = 0 if ckpt.suffix == ".safetensors" else int(load_checkpoint(ckpt)["step"])
        print(f"appended to {append_metrics(Path(args.run_dir), step, results)}")
    return 0


def _dataset_any_size(data: str) -> Any:
    """A prepared dataset at its own size (`--fakes` has no generator to say which size)."""
    from facegan.data.dataset import PackedDataset
    from facegan.data.prepare import is_prepared

    if not is_prepared(data):
        raise FaceganError(f"--fakes needs --data to be a prepared dataset (facegan prepare), got {data!r}")
    return PackedDataset(data)


def torch_cat_numpy(batches: Any) -> Any:
    """uint8 batches → one numpy array."""
    import torch

    return torch.cat(list(batches)).numpy()


def _add_serve(sub: Any) -> None:
    from facegan.cli.flags import add_dataclass_flags
    from facegan.serve.config import ServeConfig
    from facegan.serve.limits import ServeLimits

    p = sub.add_parser(
        "serve",
        help="serve a 'this face does not exist' page and PNG/GIF API",
        description="Serve a 'this face does not exist' page and PNG/GIF API. The flags are "
        "the fields of facegan.serve.ServeConfig and ServeLimits.",
    )
    add_dataclass_flags(p, ServeConfig)
    add_dataclass_flags(p.add_argument_group("limits (each holds per --workers process)"), ServeLimits)
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    from facegan.cli.flags import given_fields
    from facegan.serve.config import ServeConfig
    from facegan.serve.limits import ServeLimits

    limits = ServeLimits(**given_fields(args, ServeLimits))
    cfg = ServeConfig(**given_fields(args, ServeConfig), limits=limits)
    try:
        from facegan.serve import serve
    except ImportError as err:
        raise FaceganError(
            f"facegan serve needs its extras ({err.name} is missing): pip install 'facegan[serve]'"
        ) from None
    serve(cfg)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="facegan", description="Train, evaluate, share and serve face GANs.")
    from facegan.version import __version__

    parser.add_argument("--version", action="version", version=f"facegan {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in (_add_prepare, add_train, _add_generate, _add_export, _add_evaluate, _add_plot, _add_serve):
        add(sub)
    add_directions(sub, _add_model_source)
    add_evaluate_edits(sub, _add_model_source)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `facegan` console script."""
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # e.g. for `train --nproc-per-node` to pass on
    try:
        return int(args.func(args))
    except FaceganError as err:
        sys.stderr.write(f"facegan {args.command}: error: {err}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"facegan {args.command}: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
