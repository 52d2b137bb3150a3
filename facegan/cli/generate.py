"""`facegan generate` and `facegan export` (what the verbs that read a generator share, --checkpoint /
--pretrained, --device and the inference --amp, is in facegan/cli/model_source.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from jsonargparse import Namespace

from facegan.cli.edits import add_generate_flags, generate_edited, wants_edits
from facegan.cli.flags import Verb, verb_parser
from facegan.cli.model_source import add_device, add_inference_amp, add_model_source, model_path
from facegan.errors import FaceganError


def generate_verb() -> Verb:
    p = verb_parser("generate", description="Generate faces from a checkpoint or exported generator.")
    add_model_source(p)
    p.add_argument("--n", type=int, default=64, help="number of faces (default 64)")
    p.add_argument(
        "--seed",
        type=str,
        default="0",
        help="first seed (faces use seed..seed+n-1), or exact seeds: 7 | 0-63 | 1,5,9-12",
    )
    p.add_argument(
        "--out", type=str, default="grid.png", help="a .png for one grid, or a folder for one PNG per face"
    )
    p.add_argument("--nrow", type=int | None, help="faces per grid row")
    p.add_argument(
        "--truncation",
        type=float | None,
        help="redraw latent components beyond this magnitude (>= 0.2, e.g. 1.0): less variety, "
        "fewer broken faces",
    )
    p.add_argument(
        "--interpolate",
        action="store_true",
        help="write a latent walk through the --seed list as a .gif/.mp4 instead of stills",
    )
    p.add_argument("--frames", type=int, default=24, help="frames per leg of an --interpolate walk")
    p.add_argument("--display-size", type=int | None, help="upscale walk frames to this many pixels")
    add_device(p)
    add_inference_amp(p)
    add_generate_flags(p)
    return Verb("generate", p, _cmd_generate)


def _check_generate_args(args: Namespace, seeds: list[int]) -> list[int]:
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


def _cmd_generate(args: Namespace) -> int:
    from facegan.runtime.device import pick_device
    from facegan.sampling.generate import (
        faces,
        interpolation,
        load_generator,
        parse_seeds,
        write_faces,
        write_walk,
    )

    path = model_path(args)
    seeds = _check_generate_args(args, parse_seeds(args.seed))
    g: Any = load_generator(path, pick_device(args.device), amp=args.amp)
    if wants_edits(args):  # --edit, --edit-sweep, --list-edits (facegan/cli/edits.py)
        if len(seeds) == 1 and not args.interpolate:
            seeds = list(range(seeds[0], seeds[0] + args.n))
        return generate_edited(args, g, seeds)
    if args.interpolate:
        out = args.out if args.out != "grid.png" else "walk.gif"
        walk = write_walk(interpolation(g, seeds, args.frames, args.truncation), out, args.display_size)
        print(f"wrote a walk through seeds {', '.join(map(str, seeds))} to {walk}")
        return 0
    if len(seeds) == 1:  # a single seed starts a run of n consecutive faces
        seeds = list(range(seeds[0], seeds[0] + args.n))
    paths = write_faces(faces(g, seeds, truncation=args.truncation), seeds, args.out, nrow=args.nrow)
    where = paths[0] if len(paths) == 1 else Path(args.out)
    print(f"wrote {len(seeds)} faces (seeds {seeds[0]}..{seeds[-1]}) to {where}")
    return 0


def export_verb() -> Verb:
    p = verb_parser(
        "export", description="Export the generator (the EMA one when the run has it) for sharing."
    )
    add_model_source(p)
    p.add_argument(
        "--out", type=str | None, help="a .safetensors file, a folder for --format hub, or a .onnx file"
    )
    p.add_argument(
        "--format",
        type=Literal["safetensors", "hub", "onnx"] | None,
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
        type=str | None,
        help="Hub licence id for the model card (e.g. mit, cc-by-nc-4.0, other); "
        "the weights carry the training data's licence",
    )
    p.add_argument(
        "--dataset",
        action="append",
        type=str,
        default=[],
        metavar="ID",
        help="Hub dataset id the model was trained on, for the model card; repeat for several",
    )
    return Verb("export", p, _cmd_export, required=("out",))


def _cmd_export(args: Namespace) -> int:
    from facegan.api import export
    from facegan.runtime.device import pick_device
    from facegan.sampling.generate import load_generator

    source = model_path(args)
    fmt = args.format or ("onnx" if Path(args.out).suffix == ".onnx" else "safetensors")
    if fmt != "hub" and (args.license or args.dataset):
        raise FaceganError("--license and --dataset describe a Hub model card; use them with --format hub")
    g: Any = load_generator(source, pick_device("cpu"))  # the weights are written from the CPU
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
