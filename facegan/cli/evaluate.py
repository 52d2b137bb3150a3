"""`facegan evaluate`: FID/KID, C2ST, SWD, PRDC and the memorisation check of a generator or a folder of
fakes against a dataset's held-out images."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from jsonargparse import Namespace

from facegan.cli.flags import Verb, verb_parser
from facegan.cli.model_source import add_device, add_inference_amp, add_model_source, model_path
from facegan.data.shard import check_batch_size
from facegan.errors import FaceganError


def evaluate_verb() -> Verb:
    from facegan.metrics import PROTOCOLS  # the metric registry's protocols: a new metric shows up here

    p = verb_parser(
        "evaluate",
        description="Compare generated faces with a dataset's held-out real images under named protocols.",
    )
    add_model_source(p, fakes=True)
    p.add_argument(
        "--data", type=str | None, help="prepared dataset folder, image folder, .zip or 'synthetic'"
    )
    p.add_argument(
        "--metrics",
        type=str | None,
        help=f"comma list of {', '.join(PROTOCOLS)} "
        "(default: fid10k when the Inception weights are found, else c2st)",
    )
    p.add_argument(
        "--truncation",
        type=float | None,
        help="measure truncated sampling (as generate --truncation); default: full distribution",
    )
    p.add_argument(
        "--num-fake", type=int | None, help="override the protocols' generated count (quick checks)"
    )
    p.add_argument("--seed", type=int, default=0, help="first seed of the generated faces (default 0)")
    p.add_argument(
        "--inception-weights",
        type=str | None,
        help="path to pt_inception-2015-12-05-6726825d.pth (or set FACEGAN_INCEPTION_WEIGHTS)",
    )
    add_device(p)
    p.add_argument("--batch-size", type=int, default=256, help="images per forward pass (default 256)")
    p.add_argument("--run-dir", type=str | None, help="append the results to this run's metrics.jsonl")
    p.add_argument(
        "--real-split",
        type=Literal["auto", "heldout", "train", "all"],
        default="auto",
        help="real images to compare with: auto (default: the held-out split, or all images for "
        "data prepared without one), heldout, train, all (the usual published-FID protocol)",
    )
    p.add_argument(
        "--embedding",
        type=str | None,
        help="face embedding (.safetensors) for prdc and --nearest (default: the one shipped or "
        "cached for this data, else trained now on its training split)",
    )
    p.add_argument(
        "--nearest",
        type=int | None,
        metavar="N",
        help="also write N fakes beside their nearest training and held-out faces (memorisation "
        "check) into --nearest-out",
    )
    p.add_argument(
        "--nearest-out", type=str, default="nearest", help="folder for --nearest (default ./nearest)"
    )
    add_inference_amp(p)
    return Verb("evaluate", p, _cmd_evaluate, required=("data",))


def _cmd_evaluate(args: Namespace) -> int:
    import json

    from facegan.data.dataset import resolve_dataset
    from facegan.metrics import append_metrics, evaluate, resolve_weights
    from facegan.metrics.protocols import readings
    from facegan.metrics.reference import embedding_for, load_fakes, reference
    from facegan.runtime.device import pick_device
    from facegan.sampling.generate import load_generator

    path = model_path(args, fakes=True)
    check_batch_size(args.batch_size)
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
        source = load_generator(path, device, amp=args.amp)
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
    seen: dict[str, Any] = {}
    if ref.split == "heldout" and not args.fakes:
        from facegan.metrics.provenance import heldout_unseen, provenance

        unseen, why = heldout_unseen(provenance(source), ds)
        seen = {"heldout_unseen": unseen, "heldout_note": why}
    print(
        json.dumps(
            {
                **what,
                "data": str(args.data),
                "real_split": ref.split,
                "real_images": ref.note,
                **seen,
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

        ckpt = Path(path)
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
