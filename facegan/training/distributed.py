"""Many processes, one run: torchrun's ranks as `facegan train` uses them.

`torchrun` (torch.distributed.run) starts the processes and sets RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT; `session()` joins them with `torch.distributed.init_process_group`
(gloo on CPU; on CUDA "cpu:gloo,cuda:nccl", i.e. NCCL for CUDA tensors). What each rank does:

* Data: `--batch-size` is the global batch B; rank r trains rows [r·B/N, (r+1)·B/N) of the global
  batch of each step (`BatchSource.shard`), and every random draw of a step is made for all B rows on
  every rank, each rank keeping its own rows (`Shard`). The step's generator is seeded alike on every
  rank and draws the same numbers in the same order, so the images, z, DiffAugment parameters, flips
  and penalty interpolations of global step s are those of a one-process run, whatever N is.
* Gradients: after each backward, one all-reduce of all the optimizer's gradients flattened into one
  bucket, divided by N (`all_reduce_grads`), before the optimizer step, as StyleGAN3's training loop
  does (NVlabs/stylegan3 training/training_loop.py: the phase's gradients flattened into one tensor,
  all-reduced, divided by the GPU count; stylegan2-ada-pytorch wrapped its networks in DDP instead)
  rather than DistributedDataParallel: DDP's reducer does not support the penalties' double backward
  (`torch.autograd.grad(create_graph=True)`), two forward passes of D (real, fake) before one backward,
  or D frozen (requires_grad off) during G's step; with the explicit all-reduce D's weights get no
  gradients and no communication in G's step, and torch.compile wraps plain modules. Gradients are
  identical on every rank after it, so the weights stay bit-identical across ranks.
* BatchNorm: per-rank statistics unless --sync-bn, decided and explained in one place (`sync_batchnorm`).
* Host sync: the step itself never waits for the host; stats are all-reduced at log intervals only,
  and stop requests (SIGTERM on any rank) are agreed by an asynchronous one-integer vote
  (facegan.training.stopping).
* Agreement: at the start the ranks compare digests of their resolved config, data and initial state
  (facegan.training.agreement) and stop with one line when any differs.
* Rank 0 writes everything (run folder, TensorBoard, samples, checkpoints, plots, progress bar) and
  holds the EMA generator; what every rank must agree on that only rank 0 can know (a checkpoint, a
  run folder, an error) it computes once and broadcasts (`Dist.share`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar, cast

import torch
import torch.distributed as tdist
from torch import nn

from facegan.data.shard import Shard, check_batch
from facegan.errors import FaceganError

if TYPE_CHECKING:
    from facegan.training.build import Training

T = TypeVar("T")
# Rank 0 may evaluate (an FID pass) while the others wait for its verdict on the host-side group.
CONTROL_TIMEOUT = datetime.timedelta(hours=2)
LAUNCH = "torchrun --nproc-per-node N -m facegan train ..."


class RelayedError(FaceganError):
    """Rank 0's error, re-raised on the other ranks: rank 0 reports it, they exit quietly."""


@dataclasses.dataclass
class Dist:
    """Where this process stands in the run: rank of world, and the collectives it uses."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    control: Any = None  # a gloo process group for host-side values (votes, objects)
    comm_seconds: float = 0.0  # wall time spent in gradient all-reduces (exact on CPU, launch time on CUDA)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, batch_size: int) -> Shard:
        """This rank's rows of a global batch (one process: all of them)."""
        return Shard.of(self.rank, self.world, batch_size)

    def place(self, device: torch.device) -> torch.device:
        """The device this rank trains on: cuda → cuda:LOCAL_RANK; CPU stays; MPS is refused."""
        if self.world == 1 or device.type == "cpu":
            return device
        if device.type != "cuda":
            raise FaceganError(
                f"distributed training runs on CUDA (NCCL) or CPU (gloo), not --device "
                f"{device}; pass --device cuda or --device cpu"
            )
        if device.index not in (None, self.local_rank):
            raise FaceganError(
                f"--device {device} names one GPU, but under torchrun each rank uses "
                f"cuda:LOCAL_RANK; pass --device cuda (or auto)"
            )
        if self.local_rank >= torch.cuda.device_count():
            raise FaceganError(
                f"rank {self.rank} is local rank {self.local_rank} on its machine, which has "
                f"only {torch.cuda.device_count()} CUDA GPU(s); start at most that many "
                f"processes per machine (--nproc-per-node)"
            )
        torch.cuda.set_device(self.local_rank)
        return torch.device("cuda", self.local_rank)

    # ------------------------------------------------------------------ collectives

    def all_reduce_grads(self, opt: torch.optim.Optimizer) -> None:
        """Average the gradients of `opt`'s parameters over the ranks, in place: one bucket, one
        all-reduce (the step's graphs are small, so one message beats overlapping many)."""
        if self.world == 1:
            return
        t0 = time.perf_counter()
        grads = [p.grad for group in opt.param_groups for p in group["params"] if p.grad is not None]
        if grads:
            flat = torch.cat([g.reshape(-1) for g in grads])
            tdist.all_reduce(flat)  # SUM: gloo has no AVG
            flat.div_(self.world)
            for g, part in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
                g.copy_(part.view(g.shape))
        self.comm_seconds += time.perf_counter() - t0

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        """The mean of `t` over the ranks (a device tensor: the stats at log time)."""
        if self.world == 1:
            return t
        t = t.clone()
        tdist.all_reduce(t)
        return t / self.world

    def all_true(self, ok: bool) -> bool:
        """Whether `ok` holds on every rank (the divergence guard's verdict must be the same everywhere)."""
        if self.world == 1:
            return ok
        flag = torch.tensor([int(ok)], dtype=torch.int32)
        tdist.all_reduce(flag, op=tdist.ReduceOp.MIN, group=self.control)
        return bool(flag.item())

    def share(self, fn: Callable[[], T]) -> T:
        """`fn()` computed on rank 0 and sent to every rank (anything picklable). An exception in `fn`
        reaches every rank: rank 0 re-raises it, the others raise `RelayedError` with its message."""
        if self.world == 1:
            return fn()
        payload: list[Any] = [None]
        error: BaseException | None = None
        if self.is_main:
            try:
                payload = [("ok", fn())]
            except Exception as err:  # relayed, then re-raised below
                error = err
                payload = [
                    (
                        "error",
                        str(err)
                        if isinstance(err, FaceganError)
                        else f"rank 0 failed: {type(err).__name__}: {err}",
                    )
                ]
        tdist.broadcast_object_list(payload, src=0, group=self.control)
        if error is not None:
            raise error
        kind, value = payload[0]
        if kind == "error":
            raise RelayedError(value)
        return cast(T, value)  # broadcast_object_list filled the list with rank 0's fn() result

    def main_first(self, fn: Callable[[], T]) -> T:
        """`fn()` on every rank, rank 0 first: what rank 0 prepares once (a dataset cache) the others
        then find ready, and an error in it is rank 0's one line (the others raise `RelayedError`)."""
        if self.is_main:
            done: list[T] = []
            self.share(lambda: done.append(fn()))  # its error, if any, reaches every rank
            return done[0]
        self.share(lambda: None)  # rank 0's verdict
        return fn()

    def gather(self, obj: T) -> list[T] | None:
        """Every rank's `obj`, in rank order, on rank 0 (None elsewhere)."""
        if self.world == 1:
            return [obj]
        out: list[Any] | None = [None] * self.world if self.is_main else None
        tdist.gather_object(obj, out, dst=0, group=self.control)
        return out


SINGLE = Dist()


def launched_by_torchrun() -> bool:
    return any(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def _env_rank() -> tuple[int, int, int]:
    """(rank, world, local rank) from torchrun's environment, checked: one line for a broken launch."""
    env = os.environ
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if not env.get(k)]
    if missing:
        given = [k for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK") if k in env]
        raise FaceganError(
            f"{' and '.join(given)} {'is' if len(given) == 1 else 'are'} set but "
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not: this is one "
            f"rank of a distributed run without its rendezvous; start it with torchrun "
            f"({LAUNCH}) or unset {', '.join(given)} to train in one process"
        )
    try:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
        local = int(env.get("LOCAL_RANK", rank))
    except ValueError:
        raise FaceganError(
            f"RANK={env['RANK']!r}, WORLD_SIZE={env['WORLD_SIZE']!r}: not integers; start "
            f"facegan with torchrun ({LAUNCH})"
        ) from None
    if not 0 <= rank < world:
        raise FaceganError(
            f"RANK {rank} is outside WORLD_SIZE {world}; start facegan with torchrun ({LAUNCH})"
        )
    return rank, world, local


def _attempt_store(world: int) -> tdist.Store | None:  # type: ignore[name-defined]  # (not in __all__)
    """On one machine under torchrun, the agent's store with a prefix per restart attempt; else None
    (init_process_group's own env:// rendezvous).

    torchrun keeps one store for all restarts of a single-machine job (the same MASTER_PORT), so the
    ranks of a restart can read the addresses the killed ranks published and wait forever in
    init_process_group (seen with torch 2.14: `--max-restarts 1`, a rank killed, rank 0 back a few
    seconds after rank 1). A prefix per attempt, as torch's env:// rendezvous itself used to add
    ("/worker/attempt_N"), keeps each attempt's keys apart. Only on one machine: there every rank has
    the same TORCHELASTIC_RESTART_COUNT; across machines it counts each machine's own restarts."""
    env = os.environ
    if env.get("TORCHELASTIC_USE_AGENT_STORE") != "True" or env.get("GROUP_WORLD_SIZE", "1") != "1":
        return None
    # torch.distributed re-exports the c10d stores without listing them in __all__ (hence the ignores).
    store = tdist.TCPStore(  # type: ignore[attr-defined]
        env["MASTER_ADDR"],
        int(env["MASTER_PORT"]),
        world,
        is_master=False,
        timeout=datetime.timedelta(minutes=5),
    )
    attempt = env.get("TORCHELASTIC_RESTART_COUNT", "0")
    return tdist.PrefixStore(f"/worker/attempt_{attempt}", store)  # type: ignore[attr-defined]


@contextlib.contextmanager
def session() -> Iterator[Dist]:
    """The process's place in a torchrun launch (joined for the duration), or SINGLE without one."""
    if not launched_by_torchrun():
        yield SINGLE
        return
    rank, world, local = _env_rank()
    if world == 1:  # one rank: nothing to agree on, so the plain one-process path
        yield SINGLE
        return
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() and tdist.is_nccl_available() else "gloo"
    try:
        tdist.init_process_group(backend, rank=rank, world_size=world, store=_attempt_store(world))
        control = tdist.new_group(backend="gloo", timeout=CONTROL_TIMEOUT)
    except (RuntimeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FaceganError(
            f"rank {rank} could not join the run at {os.environ['MASTER_ADDR']}:"
            f"{os.environ['MASTER_PORT']} ({first[:200]}); check that every rank was started "
            f"with the same torchrun rendezvous"
        ) from None
    try:
        yield Dist(rank, world, local, control)
    finally:
        tdist.destroy_process_group()


# ---------------------------------------------------------------------- training on a rank


def adapt(training: Training, dist: Dist) -> Training:
    """`training` (from build.build_training) for this rank: its rows of every batch and the gradient
    average over the ranks, BatchNorm as `sync_batchnorm` decides, the EMA generator on rank 0 only
    (only rank 0 reads it — samples, evaluation, export, checkpoints — and the weights it averages are
    identical on every rank, so keeping copies elsewhere would cost memory and time for nothing).
    One process is rank 0 of 1: all the rows, nothing to average, its own BatchNorm statistics."""
    shard = dist.shard(training.cfg.train.batch_size)
    batches = training.batches.shard(dist.rank, dist.world) if training.batches is not None else None
    if sync_batchnorm(training.cfg.train.sync_bn, dist.world, training.device):
        # In place on G's and D's children (the top modules are not norms), so the optimizers, the
        # torch.compile wrappers (traced lazily) and the state-dict keys are unchanged.
        nn.SyncBatchNorm.convert_sync_batchnorm(training.g)
        nn.SyncBatchNorm.convert_sync_batchnorm(training.d)
    return dataclasses.replace(
        training,
        batches=batches,
        ema=training.ema if dist.is_main else None,
        shard=shard,
        sync=dist.all_reduce_grads,
    )


def sync_batchnorm(asked: bool, world: int, device: torch.device) -> bool:
    """Whether BatchNorm normalises over the whole global batch (torch.nn.SyncBatchNorm) rather than
    over this rank's rows: the one place that is decided.

    BatchNorm under several ranks: by default each rank normalises over its own B/N images and keeps
    its own running statistics, as DistributedDataParallel leaves BatchNorm unless converted; no
    communication is added to the forward passes. Which images and noise a step uses never depends on
    N, but the statistics BatchNorm normalises with (and through them the gradients) do; a
    BatchNorm-free config (--preset r3gan, --d-norm layer) trains the same on any N up to float
    summation order.
    --sync-bn (`asked`) makes the statistics the global batch's, so N ranks train as one process does,
    at the cost of an all-reduce per BatchNorm layer per forward pass; torch.nn.SyncBatchNorm runs on
    CUDA tensors only, so on CPU (gloo) it is refused with one line. With one process the flag changes
    nothing (its statistics already are the whole batch's). Running statistics in checkpoints are rank
    0's; a resume on another number of ranks says so once (facegan.training.trainer)."""
    if not asked or world == 1:
        return False
    if device.type != "cuda":
        raise FaceganError(
            "--sync-bn needs CUDA GPUs: torch.nn.SyncBatchNorm only runs on GPU tensors; on "
            "CPU each rank keeps BatchNorm statistics of its own B/N images (drop --sync-bn)"
        )
    return True


def check_run(batch_size: int, sync_bn: bool, world: int, device: torch.device) -> None:
    """What a run on `world` ranks needs from its config, checked before anything is built: a batch
    that splits evenly, and CUDA for --sync-bn on several ranks (`sync_batchnorm`)."""
    check_batch(batch_size, world)
    sync_batchnorm(sync_bn, world, device)
