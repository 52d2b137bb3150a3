"""How long a run trains and at which learning rates: each decided by one function here.

`total_steps` is the run's length for the loop and for `facegan train --dry-run` alike. `learning_rates`
is the whole schedule, a pure function of the step: the configured rates, the end-of-run ramp-down and
the divergence guard's lowering. The trainer applies it with `apply_learning_rates` before every step
and right after it restores a state (at the start of a resume and after a rollback), so the rate a
step trains with never depends on how the run got to that step.
"""

from __future__ import annotations

import torch

from facegan.config.schema import OptimConfig


def steps_per_epoch(train_images: int, batch_size: int) -> int:
    """Whole global batches in one pass over `train_images` (as facegan.data.dataset.BatchSource draws
    them)."""
    return train_images // batch_size


def rampdown_scale(step: int, total: int, rampdown: int) -> float:
    """The learning-rate factor for the step that makes `step + 1` of `total`: 1 until the last
    `rampdown` steps, then falling linearly, 1/rampdown at the last step (0 = no ramp-down)."""
    if rampdown <= 0:
        return 1.0
    return min(1.0, (total - step) / rampdown)


def learning_rates(
    optim: OptimConfig, step: int, total: int, guard_scale: float = 1.0
) -> tuple[float, float]:
    """(G's, D's) learning rate for step index `step` of a `total`-step run: the configured rates
    times the ramp-down factor times `guard_scale`, the divergence guard's lowering (1, or halved
    per rollback under --on-nan rollback-lower-lr)."""
    scale = guard_scale * rampdown_scale(step, total, optim.lr_rampdown)
    return optim.lr_g * scale, optim.lr_d * scale


def apply_learning_rates(
    opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer, rates: tuple[float, float]
) -> None:
    """Set every parameter group of the two optimizers to (G's, D's) rate (host floats: no sync)."""
    for opt, lr in ((opt_g, rates[0]), (opt_d, rates[1])):
        for group in opt.param_groups:
            group["lr"] = lr
