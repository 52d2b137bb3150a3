"""The learning rates the loop sets (the end-of-run ramp-down and the divergence guard's lowering), and
the guard's record: what it has done so far, saved in every checkpoint so a resume repeats it (the loop
in facegan/training/loop.py detects non-finite values and rolls back)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from facegan.config.schema import RunConfig


def set_lr(opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer, cfg: RunConfig, scale: float) -> None:
    """Set both optimizers to the config's learning rates times `scale` (the guard's lowering)."""
    for opt, lr in ((opt_g, cfg.optim.lr_g), (opt_d, cfg.optim.lr_d)):
        for group in opt.param_groups:
            group["lr"] = lr * scale


def rampdown_scale(step: int, total: int, rampdown: int) -> float:
    """The learning-rate factor for the step that makes `step + 1` of `total`: 1 until the last
    `rampdown` steps, then falling linearly, 1/rampdown at the last step (0 = no ramp-down)."""
    if rampdown <= 0:
        return 1.0
    return min(1.0, (total - step) / rampdown)


@dataclass
class GuardState:
    """What the divergence guard has done so far; saved in every checkpoint so a resume repeats it:
    the learning-rate scale, how many rollbacks the run made, and the step ranges it skips."""

    lr_scale: float = 1.0
    rollbacks: int = 0
    skip: list[tuple[int, int]] = dataclasses.field(default_factory=list)  # inclusive step ranges

    @classmethod
    def from_state(cls, raw: Any) -> GuardState:
        if not isinstance(raw, dict):  # a checkpoint written before the guard existed
            return cls()
        return cls(
            float(raw.get("lr_scale", 1.0)),
            int(raw.get("rollbacks", 0)),
            [(int(a), int(b)) for a, b in raw.get("skip", [])],
        )

    def state(self) -> dict[str, Any]:
        return {"lr_scale": self.lr_scale, "rollbacks": self.rollbacks, "skip": [list(r) for r in self.skip]}

    def skips(self, step: int) -> bool:
        """Whether the batch of step index `step` (the step that makes `step + 1`) is skipped."""
        return any(a <= step + 1 <= b for a, b in self.skip)
