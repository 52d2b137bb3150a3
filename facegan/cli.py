"""Command line: `facegan prepare|train|generate|export|evaluate|plot|serve` (also `python -m facegan`)."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from pathlib import Path
from typing import Any

from facegan.errors import FaceganError

# Flags of `train` that map onto config fields (flag dest == config field name).
MODEL_FLAGS = ("size", "latent_dim", "ngf", "ndf", "arch")
TRAIN_FLAGS = ("data", "batch_size", "epochs", "steps", "seed", "device", "hflip", "log_every",
               "sample_every", "ckpt_every", "keep_ckpts", "num_samples", "synthetic_count", "eval_every",
               "eval_metrics", "eval_num_fake", "inception_weights")
OPTIM_FLAGS = ("lr_g", "lr_d", "beta1", "beta2")
PERF_FLAGS = ("amp", "channels_last", "compile", "fused_adam", "resident")
GAN_FLAGS = ("loss", "gp_weight", "ema_kimg", "spectral_norm", "d_norm", "diffaug", "r1_gamma", "r1_every",
             "label_smoothing", "r2_gamma")
# What may change when continuing a run: its length, where it runs, and how often it reports.
RESUMABLE = {"steps", "epochs", "device", "log_every", "sample_every", "ckpt_every", "keep_ckpts",
             "eval_every", "eval_metrics", "eval_num_fake", "inception_weights", *PERF_FLAGS}


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line (not usage + error) and exits 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)


def _add_train(sub: Any) -> None:
    p = sub.add_parser("train", help="train a GAN", description="Train a DCGAN; defaults are the seeds'.")
    p.add_argument("--data", help="prepared dataset folder, image folder, .zip, or 'synthetic' (default)")
    p.add_argument("--preset", default=None,
                   help="dcgan (default, seed-faithful), dcgan-z128, tiny, dcgan-plus (dcgan + EMA + "
                        "DiffAugment), r3gan (residual nets + RpGAN + R1/R2 + EMA), sngan-da")
    p.add_argument("--arch", choices=("dcgan", "r3gan"),
                   help="dcgan (default, the seeds' networks) or r3gan (residual G/D, no normalisation)")
    p.add_argument("--size", type=int, help="image size: 32, 64 (default), 128 or 256")
    p.add_argument("--latent-dim", type=int, help="length of z (default 100)")
    p.add_argument("--ngf", type=int, help="generator width (default 64)")
    p.add_argument("--ndf", type=int, help="discriminator width (default 64)")
    p.add_argument("--batch-size", type=int, help="default 128")
    p.add_argument("--epochs", type=int, help="passes over the data (default 5)")
    p.add_argument("--steps", type=int, help="total training steps; overrides --epochs")
    p.add_argument("--lr", type=float, help="learning rate of both G and D (default 2e-4)")
    p.add_argument("--lr-g", type=float, help="generator learning rate")
    p.add_argument("--lr-d", type=float, help="discriminator learning rate")
    p.add_argument("--beta1", type=float, help="Adam beta1 (default 0.5)")
    p.add_argument("--beta2", type=float, help="Adam beta2 (default 0.999)")
    p.add_argument("--seed", type=int, help="run seed: init, data order, noise (default 0)")
    p.add_argument("--device", help="auto (default: CUDA, then MPS, then CPU), cpu, cuda, mps")
    p.add_argument("--hflip", action="store_true", default=None, help="random horizontal flips")
    p.add_argument("--log-every", type=int, help="steps between stats records (default 10)")
    p.add_argument("--sample-every", type=int, help="steps between sample grids (default 200)")
    p.add_argument("--ckpt-every", type=int, help="steps between checkpoints (default 500)")
    p.add_argument("--keep-ckpts", type=int, help="numbered checkpoints to keep (default 3)")
    p.add_argument("--num-samples", type=int, help="images in the fixed-noise grid (default 64)")
    p.add_argument("--synthetic-count", type=int, help="images in the synthetic set (default 8192)")
    perf = p.add_argument_group("speed (same training semantics; 'auto' picks per device)")
    perf.add_argument("--amp", choices=("auto", "off", "bf16", "fp16"),
                      help="autocast dtype (auto: bf16 on CUDA and on CPUs with native bf16, i.e. "
                           "AVX512-BF16 or AMX; fp32 elsewhere). off = exact fp32")
    perf.add_argument("--channels-last", choices=("auto", "on", "off"), help="NHWC memory format")
    perf.add_argument("--compile", choices=("off", "default", "max-autotune", "reduce-overhead"),
                      help="torch.compile G and D (reduce-overhead adds CUDA graphs); default off")
    perf.add_argument("--fused-adam", choices=("auto", "on", "off"), help="fused Adam kernel")
    perf.add_argument("--resident", choices=("auto", "on", "off"),
                      help="copy the uint8 dataset to the device once (auto: on for GPUs)")
    gan = p.add_argument_group("stabilizers (all off in dcgan; fixed for the life of a run)")
    gan.add_argument("--loss", choices=("bce", "hinge", "lsgan", "wgan-gp", "rpgan"),
                     help="GAN objective (default bce, the seeds' non-saturating loss; rpgan = "
                          "relativistic pairing)")
    gan.add_argument("--gp-weight", type=float, help="gradient-penalty weight of wgan-gp (default 10)")
    gan.add_argument("--ema-kimg", type=float,
                     help="EMA of G's weights, half-life in thousands of images (0 = off, default)")
    gan.add_argument("--spectral-norm", action=argparse.BooleanOptionalAction, default=None,
                     help="spectral norm on D's convs (default off)")
    gan.add_argument("--d-norm", choices=("auto", "batch", "layer", "none"),
                     help="D's hidden-layer norm; auto: none with spectral norm, else layer with wgan-gp "
                          "or R1, else batch")
    gan.add_argument("--diffaug", type=lambda s: "" if s.lower() in ("none", "off") else s,
                     help="DiffAugment ops, a comma list of color,translation,cutout (default none)")
    gan.add_argument("--r1-gamma", type=float, help="R1 penalty gamma on real images (0 = off, default)")
    gan.add_argument("--r2-gamma", type=float, help="R2 penalty gamma on generated images (0 = off, default)")
    gan.add_argument("--r1-every", type=int, help="apply R1 and R2 every N steps, scaled by N (default 16)")
    gan.add_argument("--label-smoothing", type=float,
                     help="one-sided: D's real target is 1 - s (bce only; default 0)")
    ev = p.add_argument_group("evaluation during training (metrics.jsonl, TensorBoard, checkpoints/best.pt)")
    ev.add_argument("--eval-every", type=int, help="steps between evaluations (default 0: never)")
    ev.add_argument("--eval-metrics", help="comma list (default c2st); the first picks best.pt, e.g. fid10k")
    ev.add_argument("--eval-num-fake", type=int, help="generated images per evaluation (default: protocol's)")
    ev.add_argument("--inception-weights", help="local pt_inception-2015-12-05-6726825d.pth for fid/kid")
    p.add_argument("--outdir", default="runs", help="folder that holds the numbered runs (default runs/)")
    p.add_argument("--resume", help="'auto' (latest run under --outdir) or a checkpoint / run folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from facegan.config import preset_config, with_overrides
    from facegan.loop import train

    given = {k: getattr(args, k) for k in MODEL_FLAGS + TRAIN_FLAGS + OPTIM_FLAGS + PERF_FLAGS + GAN_FLAGS
             if getattr(args, k) is not None}
    if args.lr is not None:
        given.setdefault("lr_g", args.lr)
        given.setdefault("lr_d", args.lr)
    if args.resume:
        # Other flags may repeat the checkpoint's values (the original command + --resume); train()
        # refuses real changes, naming the flag, once it has read the checkpoint's config.
        if args.preset:
            given["preset"] = args.preset
        result = train(None, Path(args.outdir), resume=args.resume, overrides_on_resume=given,  # type: ignore[arg-type]
                       quiet=args.quiet, resumable=RESUMABLE)
    else:
        cfg = with_overrides(preset_config(args.preset or "dcgan"), given)
        result = train(cfg, Path(args.outdir), quiet=args.quiet)
    with contextlib.suppress(OSError):  # a hung-up terminal (SIGHUP) must not turn a clean stop into a crash
        print(f"run folder: {result.run_dir} (step {result.step})")
    if result.interrupted:
        return 128 + (result.signum or signal.SIGTERM)  # the shell's convention for "killed by signal N"
    return 0


def _add_prepare(sub: Any) -> None:
    p = sub.add_parser("prepare", help="pack images into a training-ready dataset",
                       description="Resize+center-crop images into a packed uint8 array + manifest.")
    p.add_argument("source", help="image folder (recursive), .zip archive, or 'synthetic'")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--size", type=int, default=64, help="32, 64 (default), 128 or 256")
    p.add_argument("--min-side", type=int, help="skip images whose shorter side is smaller (default size/2)")
    p.add_argument("--count", type=int, default=8192, help="images to draw for 'synthetic'")
    p.add_argument("--seed", type=int, default=0, help="seed for 'synthetic'")
    p.add_argument("--workers", type=int, help="decoding processes (default: all cores)")
    p.add_argument("--force", action="store_true", help="replace an existing prepared dataset")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_prepare)


def _cmd_prepare(args: argparse.Namespace) -> int:
    from facegan.data import prepare

    res = prepare(args.source, args.out, args.size, min_side=args.min_side, synthetic_count=args.count,
                  seed=args.seed, workers=args.workers, force=args.force, quiet=args.quiet)
    print(f"prepared {res.count} images of {args.size}x{args.size} into {res.out}")
    if res.skipped:
        shown = "; ".join(f"{s['file']} ({s['reason']})" for s in res.skipped[:5])
        more = f" and {len(res.skipped) - 5} more" if len(res.skipped) > 5 else ""
        print(f"skipped {len(res.skipped)} files: {shown}{more} — all listed in {res.out}/manifest.json")
    return 0


def _add_model_source(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint",
                     help="training checkpoint (.pt), run folder, or exported generator (.safetensors)")
    src.add_argument("--pretrained", help="a generator shipped with facegan: celeba64, anime64")


def _model_path(args: argparse.Namespace) -> str:
    if args.pretrained:
        from facegan import pretrained

        return str(pretrained.path(args.pretrained))
    return str(args.checkpoint)


def _add_inference_amp(p: argparse.ArgumentParser) -> None:
    p.add_argument("--amp", choices=("auto", "off", "bf16"), default="auto",
                   help="inference precision: auto (default: bf16 + channels_last on CUDA and on CPUs with "
                        "native bf16, fp32 elsewhere), off (exact fp32), bf16")


def _add_generate(sub: Any) -> None:
    p = sub.add_parser("generate", help="generate faces from a checkpoint or exported generator")
    _add_model_source(p)
    p.add_argument("--n", type=int, default=64, help="number of faces (default 64)")
    p.add_argument("--seed", default="0",
                   help="first seed (faces use seed..seed+n-1), or exact seeds: 7 | 0-63 | 1,5,9-12")
    p.add_argument("--out", default="grid.png", help="a .png for one grid, or a folder for one PNG per face")
    p.add_argument("--nrow", type=int, help="faces per grid row")
    p.add_argument("--truncation", type=float,
                   help="redraw latent components beyond this magnitude (e.g. 1.0): less variety, fewer "
                        "broken faces")
    p.add_argument("--interpolate", action="store_true",
                   help="write a latent walk through the --seed list as a .gif/.mp4 instead of stills")
    p.add_argument("--frames", type=int, default=24, help="frames per leg of an --interpolate walk")
    p.add_argument("--display-size", type=int, help="upscale walk frames to this many pixels")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, mps")
    _add_inference_amp(p)
    p.set_defaults(func=_cmd_generate)


def _check_generate_args(args: argparse.Namespace, seeds: list[int]) -> list[int]:
    """Refuse bad `generate` flags before a model is loaded (one line each); returns `seeds`."""
    from facegan.generate import ANIMATION_SUFFIXES, MAX_DISPLAY_SIZE, MAX_FACES, MAX_SEED

    if not 1 <= args.n <= MAX_FACES:  # every face is held in memory at once
        raise FaceganError(f"--n must be between 1 and {MAX_FACES:,}, got {args.n}")
    if len(seeds) == 1 and not args.interpolate and seeds[0] + args.n - 1 > MAX_SEED:
        raise FaceganError(f"--seed {seeds[0]} with --n {args.n} runs past the last seed, {MAX_SEED}")
    if args.nrow is not None and args.nrow < 1:
        raise FaceganError(f"--nrow must be >= 1, got {args.nrow}")
    if args.display_size is not None and not 1 <= args.display_size <= MAX_DISPLAY_SIZE:
        raise FaceganError(f"--display-size must be between 1 and {MAX_DISPLAY_SIZE} pixels, "
                           f"got {args.display_size}")
    if not args.interpolate and Path(args.out).suffix.lower() in ANIMATION_SUFFIXES:
        raise FaceganError(f"--out {args.out!r} is an animation; add --interpolate (and --seed A,B,...) "
                           f"for a latent walk, or give a .png for a grid or a folder for one PNG per face")
    return seeds


def _cmd_generate(args: argparse.Namespace) -> int:
    from facegan.generate import faces, interpolation, load_generator, parse_seeds, write_faces, write_walk
    from facegan.loop import pick_device

    seeds = _check_generate_args(args, parse_seeds(args.seed))
    g = load_generator(_model_path(args), pick_device(args.device), amp=args.amp)
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
    p = sub.add_parser("export", help="export the generator alone as .safetensors (+ its config)")
    p.add_argument("--checkpoint", required=True, help="training checkpoint (.pt) or run folder")
    p.add_argument("--out", required=True, help="output .safetensors path")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    from facegan.checkpoint import export_generator
    from facegan.generate import load_generator

    g = load_generator(args.checkpoint)
    path = export_generator(g, g.cfg, args.out)
    print(f"exported generator ({g.cfg.size}px, latent {g.cfg.latent_dim}) to {path}")
    return 0


def _add_plot(sub: Any) -> None:
    p = sub.add_parser("plot", help="rebuild a run's curves and animation from stats.jsonl")
    p.add_argument("run", help="run folder")
    p.set_defaults(func=_cmd_plot)


def _cmd_plot(args: argparse.Namespace) -> int:
    from facegan import plots

    run = Path(args.run)
    if not (run / "stats.jsonl").is_file():
        raise FaceganError(f"{args.run!r} is not a run folder (no stats.jsonl)")
    for path in plots.rebuild(run):
        print(f"wrote {path}")
    return 0


def _add_evaluate(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="measure a generator: FID/KID (Inception) or C2ST (no download)",
                       description="Compare generated faces with a dataset under named protocols.")
    _add_model_source(p)
    p.add_argument("--data", required=True, help="prepared dataset folder, image folder, .zip or 'synthetic'")
    p.add_argument("--metrics", help="comma list of fid2k, fid10k, fid50k, kid2k, kid10k, c2st, swd, prdc "
                                     "(default: fid10k when the Inception weights are found, else c2st)")
    p.add_argument("--truncation", type=float,
                   help="measure truncated sampling (as generate --truncation); default: full distribution")
    p.add_argument("--num-fake", type=int, help="override the protocols' generated count (quick checks)")
    p.add_argument("--seed", type=int, default=0, help="first seed of the generated faces (default 0)")
    p.add_argument("--inception-weights", help="path to pt_inception-2015-12-05-6726825d.pth "
                                                "(or set FACEGAN_INCEPTION_WEIGHTS)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, mps")
    p.add_argument("--batch-size", type=int, default=256, help="images per forward pass (default 256)")
    p.add_argument("--run-dir", help="append the results to this run's metrics.jsonl")
    _add_inference_amp(p)
    p.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from facegan.data import resolve_dataset
    from facegan.generate import load_generator
    from facegan.loop import pick_device
    from facegan.metrics import append_metrics, evaluate, resolve_weights

    device = pick_device(args.device)
    g = load_generator(_model_path(args), device, amp=args.amp)
    if args.metrics:
        metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    else:
        try:
            resolve_weights(args.inception_weights)
            metrics = ["fid10k"]
        except FaceganError:
            metrics = ["c2st"]  # offline and no weights: the download-free measure
    ds = resolve_dataset(args.data, g.cfg.size)
    results = evaluate(g, ds, metrics, num_fake=args.num_fake, seed=args.seed, device=device,
                       inception_weights=args.inception_weights, batch_size=args.batch_size, progress=True,
                       truncation=args.truncation)
    print(json.dumps({"generator": str(args.pretrained or args.checkpoint), "data": str(args.data),
                      **results}))
    if args.run_dir:
        from facegan.checkpoint import load_checkpoint

        ckpt = Path(_model_path(args))
        step = 0 if ckpt.suffix == ".safetensors" else int(load_checkpoint(ckpt)["step"])
        print(f"appended to {append_metrics(Path(args.run_dir), step, results)}")
    return 0


def _add_serve(sub: Any) -> None:
    p = sub.add_parser("serve", help="serve a 'this face does not exist' page and PNG/GIF API")
    p.add_argument("--checkpoint", action="append", default=[], metavar="[NAME=]PATH",
                   help="checkpoint (.pt), run folder or exported .safetensors; repeat for several models")
    p.add_argument("--pretrained", action="append", default=[], metavar="NAME",
                   help="a shipped generator (celeba64, anime64); repeat for several")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda")
    _add_inference_amp(p)
    p.set_defaults(func=_cmd_serve)


_NAME_RE = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"


def _model_sources(specs: list[str]) -> dict[str, str]:
    """`[NAME=]PATH` specs → {name: path}; the name defaults to the file's stem (or run folder name)."""
    import re

    sources: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not re.fullmatch(_NAME_RE, name):
            path = spec
            p = Path(spec)
            name = p.name if p.is_dir() else p.stem
            if p.name in ("latest.pt",) or p.parent.name == "checkpoints":
                name = p.parent.parent.name
        if name in sources:
            raise FaceganError(f"two models are named {name!r}; name them with --checkpoint NAME=PATH")
        sources[name] = path
    return sources


def _cmd_serve(args: argparse.Namespace) -> int:
    if not args.checkpoint and not args.pretrained:
        from facegan import pretrained

        args.pretrained = pretrained.available()  # the shipped generators, when nothing is named
    if not args.checkpoint and not args.pretrained:
        raise FaceganError("facegan serve needs a model: --checkpoint [NAME=]PATH (.pt or .safetensors)")
    try:
        from facegan.serve import serve
    except ImportError as err:
        raise FaceganError(f"facegan serve needs its extras ({err.name} is missing): "
                           f"pip install 'facegan[serve]'") from None
    from facegan import pretrained

    sources = {name: str(pretrained.path(name)) for name in args.pretrained}
    for name, path in _model_sources(args.checkpoint).items():
        if name in sources:
            raise FaceganError(f"two models are named {name!r}; name them with --checkpoint NAME=PATH")
        sources[name] = path
    serve(sources, args.host, args.port, args.device, amp=args.amp)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="facegan", description="Train, evaluate, share and serve face GANs.")
    from facegan import __version__

    parser.add_argument("--version", action="version", version=f"facegan {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in (_add_prepare, _add_train, _add_generate, _add_export, _add_evaluate, _add_plot,
                _add_serve):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `facegan` console script."""
    args = build_parser().parse_args(argv)
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
