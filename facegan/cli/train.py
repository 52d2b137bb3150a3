"""`facegan train`: its flags (generated from the config fields), one process or a torchrun rank, and
the `--nproc-per-node` shortcut that starts torchrun's own launcher on this machine."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

from jsonargparse import Namespace

from facegan.cli.flags import Parser, Verb, resolve, verb_parser
from facegan.errors import FaceganError


def train_verb() -> Verb:
    """`facegan train`: the run config's fields as flags and config keys, plus run-level options."""
    from facegan.config.files import add_run_arguments, run_config, to_yaml

    p = verb_parser(
        "train",
        description="Train a GAN. Settings resolve as defaults < --preset < --config file < "
        "flags; defaults are the seeds' DCGAN.",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="resolve everything, build the models, run one step on a random batch of 2, print "
        "the plan and exit; writes nothing",
    )
    add_run_arguments(p)
    _list_registered(p)
    p.add_argument(
        "--outdir", type=str, default="runs", help="folder that holds the numbered runs (default runs/)"
    )
    p.add_argument(
        "--resume",
        type=str | None,
        help="'auto' (the latest run under --outdir; a new run if there is none yet) "
        "or a checkpoint / run folder",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--nproc-per-node",
        type=int | None,
        metavar="N",
        help="train on N processes of this machine (N GPUs, or N CPU processes) through "
        "torchrun's launcher, torch.distributed.run --standalone; --batch-size stays the "
        "global batch",
    )
    return Verb("train", p, _cmd_train, presets=True, printed=lambda ns: to_yaml(run_config(ns, ns.flags)))


def _list_registered(p: Parser) -> None:
    """--arch, --loss and --tracker list what their registries hold, so a new entry shows in --help."""
    from facegan.training.registered import REGISTRIES

    for action in p._actions:
        if action.dest in REGISTRIES and action.help:
            names = list(REGISTRIES[action.dest])
            text, default, rest = action.help.rpartition(" (default:")
            action.help = f"{text}; registered: {', '.join(names)}{default}{rest}" if default else action.help
            if action.dest != "train.tracker":  # a comma list keeps its placeholder
                action.metavar = "{" + ",".join(names) + "}"


def given_settings(verb: Verb, argv: list[str]) -> dict[str, Any]:
    """The flat `{field: value}` the --config files and flags of `argv` give (no defaults, no preset's
    values), and `preset` when one is named: what a resumed run compares with its checkpoint."""
    from facegan.config.files import converted
    from facegan.config.schema import section_types

    ns, flags = resolve(verb, argv, defaults=False)
    given: dict[str, Any] = {}
    for sec, kind in section_types().items():
        if sec in ns:
            given.update(converted(kind, ns[sec].as_dict()))
    if ns.get("lr") is not None:
        for key in ("lr_g", "lr_d"):
            if f"optim.{key}" not in flags:
                given[key] = ns.lr
    if ns.get("preset") is not None:
        given["preset"] = ns.preset
    return given


def _cmd_train(args: Namespace) -> int:
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


def _launch_local(args: Namespace) -> int:
    """`facegan train --nproc-per-node N ...`: torchrun's own launcher starts N ranks on this machine,
    each running this command line (where the flag then only has to match torchrun's LOCAL_WORLD_SIZE)."""
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    from facegan.config.files import run_config
    from facegan.data.shard import check_batch

    n = args.nproc_per_node
    if n < 1:
        raise FaceganError(f"--nproc-per-node must be >= 1, got {n}")
    if not (args.resume or args.print_config or args.dry_run):  # one line for a bad config, before N starts
        check_batch(run_config(args, args.flags).train.batch_size, n)
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


def _check_launch(args: Namespace, world: int) -> None:
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


def _train(args: Namespace, dist: Any) -> int:
    """`facegan train` in this process: the whole run, or one torchrun rank of it (`dist`)."""
    from facegan.config.files import resumable_fields, run_config, to_yaml
    from facegan.training.loop import train
    from facegan.training.plan import dry_run

    dist.share(lambda: _check_launch(args, dist.world))  # rank 0 says what is wrong, once
    if Path(args.outdir).exists() and not Path(args.outdir).is_dir():  # before any setup is printed
        raise FaceganError(f"--outdir {args.outdir!r} is a file, not a folder; choose another --outdir")
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
        given = given_settings(train_verb(), args.argv[1:])
        result = train(
            None,  # type: ignore[arg-type]
            Path(args.outdir),
            resume=args.resume,
            overrides_on_resume=given,
            quiet=args.quiet,
            resumable=resumable_fields(),
            dist=dist,
        )
    else:
        cfg = dist.share(lambda: run_config(args, args.flags))  # a mistake is one line
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
