"""`facegan train`: its flags (generated from the config fields), one process or a torchrun rank, and
the `--nproc-per-node` shortcut that starts torchrun's own launcher on this machine."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

from facegan.errors import FaceganError


def add_train(sub: Any) -> None:
    """The `facegan train` subcommand: flags generated from the config, plus run-level options."""
    from facegan.cli.flags import add_config_flags
    from facegan.config.schema import DEFAULT_PRESET, preset_names

    p = sub.add_parser(
        "train",
        help="train a GAN",
        description="Train a GAN. Settings resolve as defaults < --preset < --config file < "
        "flags; defaults are the seeds' DCGAN.",
    )
    p.add_argument(
        "--preset",
        default=None,
        help=f"a named starting config: {', '.join(preset_names())} (default {DEFAULT_PRESET}); "
        f"see facegan/presets/*.yaml",
    )
    p.add_argument(
        "--config",
        metavar="FILE.yaml",
        help="a YAML config file (the layout --print-config prints; partial files are fine): "
        "overrides the preset, flags override it",
    )
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config as YAML (ready for --config) and exit without training",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="resolve everything, build the models, run one step on a random batch of 2, print "
        "the plan and exit; writes nothing",
    )
    add_config_flags(p)
    p.add_argument("--outdir", default="runs", help="folder that holds the numbered runs (default runs/)")
    p.add_argument(
        "--resume",
        help="'auto' (the latest run under --outdir; a new run if there is none yet) "
        "or a checkpoint / run folder",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--nproc-per-node",
        type=int,
        metavar="N",
        help="train on N processes of this machine (N GPUs, or N CPU processes) through "
        "torchrun's launcher, torch.distributed.run --standalone; --batch-size stays the "
        "global batch",
    )
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from facegan.training.distributed import RelayedError, launched_by_torchrun, session

    if args.nproc_per_node is not None and not launched_by_torchrun():
        return _launch_local(args)
    with session() as dist:
        try:
            return _train(args, dist)
        except RelayedError:
            return 2  # rank 0's error: rank 0 prints it, once
        except FaceganError as err:
            if dist.is_main:
                raise
            raise FaceganError(f"rank {dist.rank}: {err}") from None


def _launch_local(args: argparse.Namespace) -> int:
    """`facegan train --nproc-per-node N ...`: torchrun's own launcher starts N ranks on this machine,
    each running this command line (where the flag then only has to match torchrun's LOCAL_WORLD_SIZE)."""
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    from facegan.cli.flags import given_settings
    from facegan.config.schema import load_config_file, resolve_config
    from facegan.data.shard import check_batch

    n = args.nproc_per_node
    if n < 1:
        raise FaceganError(f"--nproc-per-node must be >= 1, got {n}")
    if not (args.resume or args.print_config or args.dry_run):  # one line for a bad config, before N starts
        file = load_config_file(args.config) if args.config else {}
        check_batch(resolve_config(args.preset, file, given_settings(args)).train.batch_size, n)
    try:
        torchrun.run(
            torchrun.parse_args(["--standalone", "--nproc-per-node", str(n), "-m", "facegan", *args.argv])
        )
    except ChildFailedError as err:
        code = err.get_first_failure()[1].exitcode
        return 128 - code if code < 0 else code  # a rank killed by signal N: 128 + N, as a shell says
    except SignalException as err:
        return 128 + int(err.sigval)
    return 0


def _check_launch(args: argparse.Namespace, world: int) -> None:
    local = os.environ.get("LOCAL_WORLD_SIZE")
    if args.nproc_per_node is not None and local is not None and local != str(args.nproc_per_node):
        raise FaceganError(
            f"--nproc-per-node {args.nproc_per_node}, but torchrun started {local} processes "
            f"on this machine; drop --nproc-per-node when launching with torchrun"
        )
    if world > 1 and (args.print_config or args.dry_run):
        raise FaceganError(
            "--print-config and --dry-run describe a run from one process; run them without torchrun"
        )


def _train(args: argparse.Namespace, dist: Any) -> int:
    """`facegan train` in this process: the whole run, or one torchrun rank of it (`dist`)."""
    from facegan.cli.flags import given_settings
    from facegan.config.schema import flat_fields, load_config_file, resolve_config, resumable_fields, to_yaml
    from facegan.training.loop import train
    from facegan.training.plan import dry_run

    dist.share(lambda: _check_launch(args, dist.world))  # rank 0 says what is wrong, once
    if Path(args.outdir).exists() and not Path(args.outdir).is_dir():  # before any setup is printed
        raise FaceganError(f"--outdir {args.outdir!r} is a file, not a folder; choose another --outdir")
    given = given_settings(args)
    file = load_config_file(args.config) if args.config else {}
    if args.resume and (args.print_config or args.dry_run):
        raise FaceganError(
            "--print-config and --dry-run describe a new run; they do not combine with --resume"
        )
    if args.resume == "auto":
        from facegan.tracking.runs import latest_run_with_checkpoint

        if dist.share(lambda: latest_run_with_checkpoint(Path(args.outdir))) is None:  # rank 0 decides
            # Nothing to continue yet: one command line then serves the first start and every restart
            # (as litgpt's --resume auto does), e.g. under torchrun --max-restarts or a cluster requeue.
            if not args.quiet and dist.is_main:
                print(
                    f"--resume auto: no run with a checkpoint under {args.outdir!r} yet; starting a new one",
                    file=sys.stderr,
                )
            args.resume = None
    if args.resume:
        # The file's settings and the flags may repeat the checkpoint's values (the original command +
        # --resume); train() refuses real changes, naming the flag, once it has read the checkpoint.
        given = {**flat_fields(file), **given}
        if args.preset or file.get("preset"):
            given["preset"] = args.preset or file["preset"]
        result = train(
            None,
            Path(args.outdir),
            resume=args.resume,
            overrides_on_resume=given,  # type: ignore[arg-type]
            quiet=args.quiet,
            resumable=resumable_fields(),
            dist=dist,
        )
    else:
        cfg = dist.share(lambda: resolve_config(args.preset, file, given))  # a mistake is one line
        if args.print_config:
            print(to_yaml(cfg), end="")
            return 0
        if args.dry_run:
            print("\n".join(dry_run(cfg, Path(args.outdir))))
            return 0
        result = train(cfg, Path(args.outdir), quiet=args.quiet, dist=dist)
    with contextlib.suppress(OSError):  # a hung-up terminal (SIGHUP) must not turn a clean stop into a crash
        if dist.is_main:
            print(f"run folder: {result.run_dir} (step {result.step})")
    if result.interrupted:
        return 128 + (result.signum or signal.SIGTERM)  # the shell's convention for "killed by signal N"
    return 0
