"""The CLI of attribute edits: `generate --edit / --edit-sweep / --list-edits`, `facegan directions`
(find edit directions, supervised or not) and `facegan evaluate-edits` (measure them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from jsonargparse import Namespace

from facegan.cli.flags import Parser, Verb, verb_parser
from facegan.errors import FaceganError

if TYPE_CHECKING:  # torch is imported by the commands, not by `facegan --help`
    from torch import nn

DEFAULT_EDITS = "Smiling,Male,Young,Blond_Hair,Black_Hair,Eyeglasses,Bangs,Mouth_Slightly_Open,Heavy_Makeup"


def add_generate_flags(p: Parser) -> None:
    p.add_argument(
        "--edit",
        action="append",
        type=str,
        default=[],
        metavar="NAME=AMOUNT",
        help="move every face along an attribute edit, AMOUNT from -1 (clearly without) to 1 "
        "(clearly with); repeat for several, e.g. --edit Smiling=1 --edit Young=-0.5",
    )
    p.add_argument(
        "--edit-sweep",
        type=str | None,
        metavar="NAME",
        help="write a grid: one row per seed, columns the edit's amounts from -1 to 1",
    )
    p.add_argument("--sweep-columns", type=int, default=7, help="columns of --edit-sweep (default 7)")
    p.add_argument("--list-edits", action="store_true", help="print the edits this model has and exit")
    p.add_argument(
        "--edits",
        type=str | None,
        metavar="FILE",
        help="edit directions to use instead of those shipped beside the model "
        "(a .safetensors from facegan directions)",
    )


def directions_of(g: Any, path: str | None) -> Any:
    """The directions `--edits` names, else those loaded with the model (None when there are none)."""
    if path:
        from facegan.sampling.directions import load_directions

        directions = load_directions(path)
        if directions.latent_dim != g.cfg.latent_dim:
            raise FaceganError(
                f"--edits {path!r} is for latent size {directions.latent_dim}, the model's is "
                f"{g.cfg.latent_dim}"
            )
        return directions
    return getattr(g, "edits", None)


def wants_edits(args: Namespace) -> bool:
    return bool(args.edit or args.edit_sweep or args.list_edits)


def generate_edited(args: Namespace, g: nn.Module, seeds: list[int]) -> int:
    """`facegan generate` with --list-edits, --edit-sweep or --edit (seeds already expanded)."""
    from facegan.sampling.directions import parse_edits
    from facegan.sampling.generate import write_faces
    from facegan.sampling.render import amounts, edit_faces, sweep, write_grid

    directions = directions_of(g, args.edits)
    if args.list_edits:
        if directions is None:
            print("this model has no edits (find some with `facegan directions`)")
            return 0
        print("\n".join(directions.names))
        return 0
    if args.interpolate:
        raise FaceganError("--edit and --edit-sweep do not combine with --interpolate")
    edits = parse_edits(args.edit, directions)
    if args.edit_sweep:
        if edits:
            raise FaceganError("give either --edit or --edit-sweep, not both")
        if directions is None:
            raise FaceganError("this model has no edit directions; find some with `facegan directions`")
        directions.check({args.edit_sweep: 0.0})
        columns = amounts(args.sweep_columns)
        if len(seeds) * len(columns) > 4096:
            raise FaceganError(
                f"a sweep of {len(seeds)} seeds × {len(columns)} columns is too large (at most 4,096 faces)"
            )
        if Path(args.out).suffix.lower() not in (".png", ".jpg", ".jpeg"):
            raise FaceganError(f"--edit-sweep writes one grid; give --out a .png, got {args.out!r}")
        images = sweep(g, directions, seeds, args.edit_sweep, len(columns), args.truncation)
        path = write_grid(images, len(columns), args.out)
        print(
            f"wrote a {args.edit_sweep} sweep (rows: seeds {seeds[0]}..{seeds[-1]}; columns: "
            f"{', '.join(f'{a:.2g}' for a in columns)}) to {path}"
        )
        return 0
    images = edit_faces(g, directions, seeds, edits, args.truncation)
    paths = write_faces(images, seeds, args.out, nrow=args.nrow)
    where = paths[0] if len(paths) == 1 else Path(args.out)
    said = ", ".join(f"{k}={v:g}" for k, v in edits.items())
    print(f"wrote {len(seeds)} faces (seeds {seeds[0]}..{seeds[-1]}, edits {said}) to {where}")
    return 0


def directions_verb() -> Verb:
    from facegan.cli.model_source import add_model_source

    p = verb_parser(
        "directions",
        description="With --attrs and --data: supervised directions (InterFaceGAN normals "
        "refined by gradient, calibrated with an attribute classifier trained on half the "
        "labelled faces). Without: unsupervised ones (SeFa or GANSpace) and a sweep grid "
        "each, to name with --names.",
    )
    add_model_source(p)
    p.add_argument("--out", type=str | None, help="the directions file to write (.safetensors)")
    p.add_argument("--attrs", type=str | None, help="list_attr_celeba.txt of the labelled faces (supervised)")
    p.add_argument(
        "--data", type=str | None, help="the labelled faces: a zip, folder or prepared dataset (supervised)"
    )
    p.add_argument(
        "--names",
        type=str | None,
        metavar="YAML",
        help="unsupervised: write only the directions a names file maps (Name: {direction: N, sign: 1})",
    )
    p.add_argument(
        "--edit-names", type=str, default=DEFAULT_EDITS, help="supervised: comma list of attributes"
    )
    p.add_argument(
        "--classifier",
        type=str | None,
        help="supervised: cache file of the finding classifier (trained if absent)",
    )
    p.add_argument(
        "--condition-on",
        type=str,
        default="",
        metavar="ATTRS",
        help="supervised: conditional manipulation, a comma list of attributes an edit should "
        "keep (removed from each direction where correlated, e.g. Male,Young,Eyeglasses), "
        "or 'edits' for all the other edits; default none: the plain directions, which "
        "swing furthest (docs/edits.md)",
    )
    p.add_argument("--samples", type=int, default=6000, help="supervised: faces labelled to fit boundaries")
    p.add_argument(
        "--refine",
        type=int | None,
        default=None,
        metavar="ITERS",
        help="supervised: gradient steps refining each direction through the generator and the "
        "finding classifier, holding the other edits' attributes (default: facegan.edits.refine's "
        "setting, the measured winner; 0 = the plain InterFaceGAN normals; docs/edits.md compares them)",
    )
    p.add_argument("--method", type=Literal["sefa", "ganspace"], default="sefa", help="unsupervised method")
    p.add_argument("--count", type=int, default=10, help="unsupervised: directions to find (default 10)")
    p.add_argument("--step", type=float, default=3.0, help="unsupervised: z distance at amount ±1")
    p.add_argument(
        "--sweeps", type=str | None, help="folder for one sweep grid per direction (default: beside --out)"
    )
    p.add_argument("--seed", type=str, default="0-5", help="seeds (rows) of the sweep grids")
    return Verb("directions", p, _cmd_directions, required=("out",))


def _cmd_directions(args: Namespace) -> int:
    from facegan.cli.model_source import model_path
    from facegan.sampling.generate import load_generator, parse_seeds
    from facegan.sampling.render import sweep, write_grid

    g = load_generator(model_path(args), amp="off")
    if bool(args.attrs) != bool(args.data):
        raise FaceganError("supervised directions need both --attrs and --data")
    if args.attrs:
        from facegan.edits.classifier import classifier_for_half
        from facegan.edits.refine import ITERS
        from facegan.edits.supervised import find_supervised

        refine_iters = ITERS if args.refine is None else args.refine
        if not 0 <= refine_iters <= 10_000:
            raise FaceganError(f"--refine must be between 0 and 10,000 steps, got {refine_iters}")
        net = classifier_for_half(args.data, args.attrs, "A", cache=args.classifier)
        edits = [e.strip() for e in args.edit_names.split(",") if e.strip()]
        unknown = [e for e in edits if e not in net.names]
        if unknown:
            raise FaceganError(
                f"unknown attribute {unknown[0]!r}; the attribute file has: {', '.join(net.names)}"
            )
        conditions = (
            None
            if args.condition_on == "edits"
            else [c.strip() for c in args.condition_on.split(",") if c.strip()]
        )
        unknown = [c for c in conditions or [] if c not in net.names]
        if unknown:
            raise FaceganError(
                f"unknown attribute {unknown[0]!r} in --condition-on; the attribute file has: "
                f"{', '.join(net.names)}"
            )
        found = find_supervised(
            g,
            net,
            edits,
            samples=args.samples,
            conditional=conditions != [],
            conditions=conditions,
            refine_iters=refine_iters,
            log=print,
        )
    else:
        from facegan.edits.unsupervised import ganspace, named, read_names, sefa, unnamed

        if not 1 <= args.count <= 64:
            raise FaceganError(f"--count must be between 1 and 64, got {args.count}")
        vectors, _ = (sefa if args.method == "sefa" else ganspace)(g, args.count)
        found = unnamed(vectors, args.step, args.method)
        if args.names:
            found = named(found, read_names(args.names))
    out = found.save(args.out)
    print(f"wrote {len(found.names)} directions ({found.info.get('method')}) to {out}")
    folder = Path(args.sweeps) if args.sweeps else out.with_name(out.name.split(".")[0] + "-sweeps")
    seeds = parse_seeds(args.seed, limit=64)
    for name in found.names:
        path = write_grid(sweep(g, found, seeds, name), 7, folder / f"{name}.png")
    print(f"wrote {len(found.names)} sweep grids (rows: seeds, columns: -1 … 1) to {path.parent}")
    return 0


def evaluate_edits_verb() -> Verb:
    from facegan.cli.model_source import add_model_source

    p = verb_parser(
        "evaluate-edits",
        description="Trains (or reads) the measuring classifier on the half of the labelled "
        "faces the finding one never saw, and measures each edit: target "
        "probability at -1/0/+1 beside real faces' (the scale of a swing), entanglement, "
        "identity drift, SWD at ±1.",
    )
    add_model_source(p)
    p.add_argument("--data", type=str | None, help="the labelled faces: a zip, folder or prepared dataset")
    p.add_argument("--attrs", type=str | None, help="their list_attr_celeba.txt")
    p.add_argument(
        "--edits", type=str | None, metavar="FILE", help="directions to measure instead of the shipped ones"
    )
    p.add_argument(
        "--classifier", type=str | None, help="cache file of the measuring classifier (trained if absent)"
    )
    p.add_argument(
        "--half",
        type=Literal["A", "B"],
        default="B",
        help="which half's classifier measures (default B: the one that did not find them)",
    )
    p.add_argument("--n", type=int, default=256, help="seeds measured per edit (default 256)")
    p.add_argument(
        "--json", type=str | None, help="write all figures (the full entanglement matrix too) here"
    )
    p.add_argument("--markdown", type=str | None, help="write the model card's tables here")
    return Verb("evaluate-edits", p, _cmd_evaluate_edits, required=("data", "attrs"))


def _cmd_evaluate_edits(args: Namespace) -> int:
    from facegan.cli.model_source import model_path
    from facegan.edits.classifier import classifier_for_half, labelled_faces, split_halves
    from facegan.edits.evaluate import evaluate_edits, markdown, real_reference, summary
    from facegan.edits.supervised import EVAL_SEED
    from facegan.sampling.generate import load_generator
    from facegan.sampling.render import edit_faces

    if not 16 <= args.n <= 4096:
        raise FaceganError(f"--n must be between 16 and 4,096, got {args.n}")
    g = load_generator(model_path(args), amp="off")
    directions = directions_of(g, args.edits)
    if directions is None:
        raise FaceganError("this model has no edit directions to measure")
    net = classifier_for_half(args.data, args.attrs, args.half, cache=args.classifier)
    unknown = [e for e in directions.names if e not in net.names]
    if unknown:
        raise FaceganError(
            f"edit {unknown[0]!r} is not an attribute of {args.attrs!r}, so it cannot be measured"
        )
    images, labels, label_names = labelled_faces(args.data, args.attrs)
    a, b = split_halves(len(images))
    real = images[b if args.half == "B" else a]
    unseen = a if args.half == "B" else b  # the half the measuring classifier never trained on
    reference = real_reference(net, images[unseen], labels[unseen], label_names, directions.names)

    def render(seeds: list[int], edits: dict[str, float]) -> Any:
        return edit_faces(g, directions, seeds, edits)

    seeds = list(range(EVAL_SEED, EVAL_SEED + args.n))
    result = evaluate_edits(render, directions.names, net, real, seeds, reference=reference)
    result["summary"] = summary(result)
    result["measured_by"] = f"classifier {args.half}"
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    table = markdown(result)
    if args.markdown:
        Path(args.markdown).write_text(table)
    print(table)
    print(json.dumps(result["summary"]))
    return 0
