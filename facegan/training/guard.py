"""The divergence guard's record: what it has done so far, saved in every checkpoint so a resume repeats
it (the trainer, facegan/training/trainer.py, detects non-finite values and rolls back; its learning-rate
lowering enters the one schedule, facegan/training/schedule.py)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


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
