"""How a run stops early: a signal becomes a flag the loop checks between steps, and the ranks of a
torchrun launch agree on it, so every rank leaves the loop after the same step and a checkpoint is
written from a consistent state instead of dying mid-update."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

import torch
import torch.distributed as tdist

from facegan.training.distributed import Dist


class StopFlag:
    """Turns SIGINT/SIGTERM/SIGHUP into a flag the loop checks between steps. SIGHUP is a dropped SSH
    session or closed terminal: without it here, everything since the last checkpoint would be lost."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        # SIGHUP does not exist on Windows.
        stops = (signal.SIGINT, signal.SIGTERM, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else []))
        for sig in stops:
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C means "really stop now"
        self.signum = signum

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class StopVote:
    """Agree on stopping (a signal seen by any rank) without a wait in the step: each `poll` starts an
    asynchronous MAX all-reduce of this rank's signal number and reads the previous poll's result, so
    all ranks stop after the same step, one step after the first of them was signalled. With one rank
    the agreement is the flag itself, read when asked."""

    def __init__(self, dist: Dist, flag: StopFlag) -> None:
        self.dist, self.flag = dist, flag
        self._agreed: int | None = None
        self._work: Any = None
        self._buf = torch.zeros(1, dtype=torch.int64)

    @property
    def agreed(self) -> int | None:
        """The signal that stops the run (the same on every rank), or None."""
        return self.flag.signum if self.dist.world == 1 else self._agreed

    def poll(self) -> None:
        """Call once per step on every rank."""
        if self.dist.world == 1:
            return
        if self._work is not None:
            self._work.wait()
            self._work = None
            if int(self._buf.item()):
                self._agreed = int(self._buf.item())
        if self._agreed is None:
            self._buf = torch.tensor([self.flag.signum or 0], dtype=torch.int64)
            self._work = tdist.all_reduce(
                self._buf, op=tdist.ReduceOp.MAX, group=self.dist.control, async_op=True
            )

    def close(self) -> None:
        """Finish the vote in flight (every rank started it, so this never waits long)."""
        if self._work is not None:
            self._work.wait()
            self._work = None
