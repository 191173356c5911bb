"""Learning-rate schedules: a `schedule:` section -> a multiplier of the peak LR per optimizer step.

Each schedule is a plain function `step -> factor` (factor 1.0 = the group's peak LR), wrapped in
torch's `LambdaLR`, which scales every parameter group (layer-wise LRs included) together. Steps
count optimizer steps, so gradient accumulation and process count do not change the curve.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from .recipe.schedule import ScheduleSection

if TYPE_CHECKING:
    import torch

LRFactor = Callable[[int], float]


def warmup_steps(spec: ScheduleSection, total_steps: int) -> int:
    """Warmup length in optimizer steps (a ratio is rounded up, as transformers does)."""
    if spec.warmup_steps is not None:
        return min(spec.warmup_steps, total_steps)
    if spec.warmup_ratio is not None:
        return math.ceil(spec.warmup_ratio * total_steps)
    return 0


def linear_warmup(step: int, warmup: int) -> float:
    """0 -> 1 over `warmup` steps (the LR at step 0 is 0, as in BERT)."""
    return step / warmup if warmup > 0 else 1.0


def lr_factor(spec: ScheduleSection, total_steps: int) -> LRFactor:
    """The multiplier of the peak LR at each optimizer step for this schedule."""
    warmup = warmup_steps(spec, total_steps)
    decay_steps = max(1, total_steps - warmup)

    def linear(step: int) -> float:
        if step < warmup:
            return linear_warmup(step, warmup)
        return max(0.0, (total_steps - step) / decay_steps)

    def constant(step: int) -> float:
        return linear_warmup(step, warmup) if step < warmup else 1.0

    return {"linear": linear, "constant": constant}[spec.name]


def build_scheduler(
    optimizer: torch.optim.Optimizer, spec: ScheduleSection, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """A `LambdaLR` that applies the schedule's factor to every parameter group."""
    from torch.optim.lr_scheduler import LambdaLR

    return LambdaLR(optimizer, lr_factor(spec, total_steps))


def lr_curve(spec: ScheduleSection, total_steps: int, peak_lr: float) -> list[float]:
    """LR at every optimizer step 0..total_steps-1 (for plots and `finetune explain`)."""
    factor = lr_factor(spec, total_steps)
    return [peak_lr * factor(step) for step in range(total_steps)]
