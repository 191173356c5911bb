"""Learning-rate schedules: a `schedule:` section -> a multiplier of the peak LR per optimizer step.

Every schedule is a closed-form function `step -> factor` (factor 1.0 = a group's peak LR).
`FactorScheduler` applies it to every parameter group, layer-wise LR groups and groups added
mid-run (gradual unfreezing) included. Steps count optimizer steps, so gradient accumulation and
the number of processes do not change the curve, and a resumed run recomputes the same LR from the
step alone. The formulas follow torch's and transformers' schedulers (the tests use them as
oracles); one shape for all of them is what lets warmup compose with any schedule, groups join
mid-run, and `finetune plot-schedule` draw a run without an optimizer. `plateau` is the one schedule
that depends on the run: torch's `ReduceLROnPlateau` decides the cuts from the validation metric
(`schedules/scheduler.py` holds the torch side: the scheduler, the plateau state and its callback).

Notation (docs/schedules-and-regularization.md, "Learning-rate schedules"): t = optimizer step (0-based; the LR of step t+1),
T = total steps, W = warmup steps, p = clamp((t - W) / (T - W), 0, 1), m = min_lr / lr.

This module imports torch only inside functions, so plots of a schedule load fast.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from finetune.errors import FinetuneError
from finetune.recipe.schedule import ScheduleSection

if TYPE_CHECKING:
    import torch

    from finetune.schedules.scheduler import FactorScheduler

LRFactor = Callable[[int], float]


def warmup_steps(spec: ScheduleSection, total_steps: int) -> int:
    """Warmup length in optimizer steps (a ratio is rounded up, as transformers does)."""
    if spec.warmup_steps is not None:
        return min(spec.warmup_steps, total_steps)
    if spec.warmup_ratio is not None:
        return math.ceil(spec.warmup_ratio * total_steps)
    return 0


@dataclass(frozen=True)
class Plan:
    """The run-dependent numbers a schedule needs."""

    spec: ScheduleSection
    total: int  # T
    warmup: int  # W
    floor: float  # m = min_lr / peak lr
    steps_per_epoch: float | None

    def progress(self, step: int) -> float:
        """p: 0 at the end of warmup, 1 at the last step."""
        return min(1.0, max(0, step - self.warmup) / max(1, self.total - self.warmup))

    def after_warmup(self, step: int) -> int:
        return max(0, step - self.warmup)

    def in_steps(self, value: float, key: str) -> float:
        """A `period`/`milestones`/`gamma` count in optimizer steps (`schedule.unit`)."""
        if self.spec.unit == "steps":
            return value
        if self.steps_per_epoch is None:
            raise FinetuneError(
                f"schedule.{key}: counted in epochs (schedule.unit: epochs), but the number of optimizer "
                f"steps per epoch is unknown here; give it (plot-schedule: --steps-per-epoch) or use unit: steps"
            )
        return value * self.steps_per_epoch

    def decayed(self, shape: float) -> float:
        """From 1 (shape 1) down to the floor m (shape 0)."""
        return self.floor + (1 - self.floor) * shape


def warmup_ramp(spec: ScheduleSection, warmup: int) -> LRFactor:
    """Factor during warmup, 1 after it: linear s + (1-s) t/W, or exponential s^(1 - t/W)."""
    if spec.warmup_type == "exponential":
        start = 0.01 if spec.warmup_start is None else spec.warmup_start
        return lambda t: start ** (1 - t / warmup) if t < warmup else 1.0
    start = spec.warmup_start or 0.0
    return lambda t: start + (1 - start) * t / warmup if t < warmup else 1.0


# --- schedules after warmup: each returns g(t); the LR factor is warmup(t) * g(t) ---


def _linear(plan: Plan) -> LRFactor:
    """m + (1-m)(1-p): BERT's linear decay (to 0 by default)."""
    return lambda t: plan.decayed(1 - plan.progress(t))


def _constant(plan: Plan) -> LRFactor:
    """1."""
    return lambda t: 1.0


def _cosine(plan: Plan) -> LRFactor:
    """m + (1-m)(1 + cos(pi p))/2 (Loshchilov & Hutter 2017, one half-cycle)."""
    return lambda t: plan.decayed(0.5 * (1 + math.cos(math.pi * plan.progress(t))))


def _polynomial(plan: Plan) -> LRFactor:
    """m + (1-m)(1-p)^power (transformers' polynomial decay)."""
    power = plan.spec.power or 1.0
    return lambda t: plan.decayed((1 - plan.progress(t)) ** power)


def _cosine_restarts(plan: Plan) -> LRFactor:
    """SGDR (Loshchilov & Hutter 2017): cosine from 1 to m within each cycle, then restart at 1.

    Cycle i lasts T0 * mult^i steps; t' = t - W is the position in the current cycle's frame.
    """
    first = plan.in_steps(plan.spec.period, "period")
    mult = plan.spec.cycle_mult or 1

    def factor(t: int) -> float:
        since = plan.after_warmup(t)
        if mult == 1:
            position, length = since % first, first
        else:
            cycle = int(math.log(since / first * (mult - 1) + 1, mult))
            position = since - first * (mult**cycle - 1) / (mult - 1)
            length = first * mult**cycle
            if position >= length:  # float rounding at a cycle boundary
                position, length = position - length, length * mult
        return plan.decayed(0.5 * (1 + math.cos(math.pi * position / length)))

    return factor


def _step(plan: Plan) -> LRFactor:
    """gamma^floor(t / period): torch's StepLR, counted from the start of training."""
    period = plan.in_steps(plan.spec.period, "period")
    gamma = plan.spec.gamma or 0.1
    return lambda t: gamma ** math.floor(t / period + 1e-9)


def _multistep(plan: Plan) -> LRFactor:
    """gamma^(milestones passed): torch's MultiStepLR, milestones counted from the start of training."""
    milestones = [plan.in_steps(m, "milestones") for m in plan.spec.milestones]
    gamma = plan.spec.gamma or 0.1
    return lambda t: gamma ** sum(t >= round(m) for m in milestones)


def _exponential(plan: Plan) -> LRFactor:
    """gamma^((t - W) / unit): continuous exponential decay after warmup."""
    unit = plan.in_steps(1.0, "gamma")
    gamma = plan.spec.gamma
    return lambda t: gamma ** (plan.after_warmup(t) / unit)


def _inverse_sqrt(plan: Plan) -> LRFactor:
    """1 / sqrt(1 + (t - W) / timescale) (Vaswani et al. 2017; transformers' inverse_sqrt)."""
    timescale = plan.spec.timescale or plan.warmup or 10_000
    return lambda t: 1 / math.sqrt(1 + plan.after_warmup(t) / timescale)


def _cyclic(plan: Plan) -> LRFactor:
    """CLR (Smith 2017), torch's CyclicLR: triangle waves between min_lr and lr, `period` per cycle."""
    size = plan.in_steps(plan.spec.period, "period")
    mode = plan.spec.mode or "triangular"
    gamma = 1.0 if plan.spec.gamma is None else plan.spec.gamma

    def factor(t: int) -> float:
        cycle = math.floor(1 + t / size)
        x = 1 + t / size - cycle
        height = x / 0.5 if x <= 0.5 else (x - 1) / (0.5 - 1)
        if mode == "triangular2":
            height /= 2 ** (cycle - 1)
        elif mode == "exp_range":
            height *= gamma**t
        return plan.decayed(height)

    return factor


def _one_cycle(plan: Plan) -> LRFactor:
    """1cycle (Smith & Topin 2019), torch's OneCycleLR without momentum cycling.

    From 1/div up to 1 over the warmup (default 30% of T), then down to 1/(div * final_div) at T-1;
    `anneal` cos: end + (start - end)(1 + cos(pi q))/2, linear: start + (end - start) q.
    """
    spec = plan.spec
    if spec.warmup_steps is not None:
        rise_end = float(min(spec.warmup_steps, plan.total)) - 1
    else:
        rise_end = float((0.3 if spec.warmup_ratio is None else spec.warmup_ratio) * plan.total) - 1
    start = 1 / (spec.div_factor or 25.0)
    end = start / (spec.final_div_factor or 1e4)
    last = plan.total - 1

    def anneal(a: float, b: float, q: float) -> float:
        if spec.anneal == "linear":
            return a + (b - a) * q
        return b + (a - b) / 2 * (math.cos(math.pi * q) + 1)

    def factor(t: int) -> float:
        t = min(t, last)
        if t <= rise_end:
            return anneal(start, 1.0, t / rise_end) if rise_end > 0 else 1.0
        return anneal(1.0, end, (t - rise_end) / max(last - rise_end, 1e-12))

    return factor


def _slanted_triangular(plan: Plan) -> LRFactor:
    """STLR (Howard & Ruder 2018): cut = floor(T cut_frac); p = t/cut, then 1 - (t-cut)/(T-cut);
    factor (1 + p(ratio - 1)) / ratio with ratio = lr / min_lr (default 32), i.e. m + (1-m)p."""
    spec = plan.spec
    if spec.warmup_steps is not None:
        cut = min(spec.warmup_steps, plan.total)
    else:
        cut = math.floor(plan.total * (0.1 if spec.warmup_ratio is None else spec.warmup_ratio))
    cut = max(cut, 1)
    floor = 1 / 32 if spec.min_lr is None else plan.floor

    def factor(t: int) -> float:
        p = t / cut if t < cut else 1 - (t - cut) / max(1, plan.total - cut)
        return floor + (1 - floor) * max(0.0, p)

    return factor


def _wsd(plan: Plan) -> LRFactor:
    """Warmup-stable-decay (Hu et al. 2024; transformers' get_wsd_schedule): flat at 1 until the last
    D = ceil(decay_ratio T) steps, then down to m: linear 1-q, cosine (1 + cos(pi q))/2, 1-sqrt(q)."""
    spec = plan.spec
    decay = math.ceil((spec.decay_ratio or 0.1) * plan.total)
    start = max(plan.total - decay, plan.warmup)
    shape = spec.decay_shape or "linear"

    def factor(t: int) -> float:
        if t < start:
            return 1.0
        q = min(1.0, (t - start) / max(1, plan.total - start))
        if shape == "cosine":
            return plan.decayed(0.5 * (1 + math.cos(math.pi * q)))
        if shape == "1-sqrt":
            return plan.decayed(1 - math.sqrt(q))
        return plan.decayed(1 - q)

    return factor


SCHEDULES: dict[str, Callable[[Plan], LRFactor]] = {
    "linear": _linear,
    "constant": _constant,
    "cosine": _cosine,
    "cosine_restarts": _cosine_restarts,
    "step": _step,
    "multistep": _multistep,
    "exponential": _exponential,
    "polynomial": _polynomial,
    "inverse_sqrt": _inverse_sqrt,
    "cyclic": _cyclic,
    "one_cycle": _one_cycle,
    "slanted_triangular": _slanted_triangular,
    "wsd": _wsd,
    "plateau": _constant,  # warmup, then flat; PlateauScale multiplies in the cuts
}
OWN_RISE = ("one_cycle", "slanted_triangular")  # their rising phase is the warmup


def lr_factor(
    spec: ScheduleSection, total_steps: int, peak_lr: float, steps_per_epoch: float | None = None
) -> LRFactor:
    """The multiplier of the peak LR at each optimizer step for this schedule (warmup included)."""
    floor = (spec.min_lr or 0.0) / peak_lr
    warmup = warmup_steps(spec, total_steps)
    plan = Plan(spec, total_steps, warmup, floor, steps_per_epoch)
    schedule = SCHEDULES[spec.name](plan)
    if spec.name in OWN_RISE or warmup == 0:
        return schedule
    ramp = warmup_ramp(spec, warmup)
    return lambda t: ramp(t) * schedule(t)


def lr_curve(
    spec: ScheduleSection, total_steps: int, peak_lr: float, steps_per_epoch: float | None = None
) -> list[float]:
    """LR at every optimizer step 0..total_steps-1 (for plots and `finetune explain`)."""
    factor = lr_factor(spec, total_steps, peak_lr, steps_per_epoch)
    return [peak_lr * factor(step) for step in range(total_steps)]


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    spec: ScheduleSection,
    total_steps: int,
    steps_per_epoch: float | None = None,
    greater_is_better: bool = True,
) -> FactorScheduler:
    """A `FactorScheduler` applying the schedule to every parameter group of `optimizer`.

    The peak LR that `min_lr` is measured against is the optimizer's default `lr` (`optimizer.lr`).
    `greater_is_better` is the direction of the metric a `plateau` schedule watches.
    """
    from finetune.schedules.scheduler import FactorScheduler, PlateauScale

    peak = float(optimizer.defaults["lr"])
    factor = lr_factor(spec, total_steps, peak, steps_per_epoch)
    plateau = None
    if spec.name == "plateau":
        plateau = PlateauScale(
            factor=spec.gamma or 0.1,
            patience=1 if spec.patience is None else spec.patience,
            threshold=1e-4 if spec.threshold is None else spec.threshold,
            cooldown=spec.cooldown or 0,
            floor=(spec.min_lr or 0.0) / peak,
            greater_is_better=greater_is_better,
        )
    return FactorScheduler(optimizer, factor, plateau)
