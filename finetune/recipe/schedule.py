"""`schedule:` how the learning rate moves over the run.

One section for every schedule: `name` picks the schedule, and the other keys are its settings.
A key that does not apply to the chosen schedule must keep its default (an error names it), so
`schedule.power` given to `cosine` is caught instead of silently ignored. The formulas are in
`finetune/schedules/formulas.py` and in docs/schedules-and-regularization.md.
"""

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from .base import Section

ScheduleName = Literal[
    "linear",
    "constant",
    "cosine",
    "cosine_restarts",
    "step",
    "multistep",
    "exponential",
    "polynomial",
    "inverse_sqrt",
    "cyclic",
    "one_cycle",
    "slanted_triangular",
    "wsd",
    "plateau",
]

# The schedules each setting applies to; every other schedule rejects it (see `_applies`).
APPLIES_TO: dict[str, tuple[str, ...]] = {
    "warmup_type": tuple(n for n in ScheduleName.__args__ if n not in ("one_cycle", "slanted_triangular")),
    "warmup_start": tuple(n for n in ScheduleName.__args__ if n not in ("one_cycle", "slanted_triangular")),
    "min_lr": (
        "linear",
        "cosine",
        "cosine_restarts",
        "polynomial",
        "cyclic",
        "slanted_triangular",
        "wsd",
        "plateau",
    ),
    "unit": ("step", "multistep", "exponential", "cosine_restarts", "cyclic"),
    "period": ("step", "cosine_restarts", "cyclic"),
    "cycle_mult": ("cosine_restarts",),
    "milestones": ("multistep",),
    "gamma": ("step", "multistep", "exponential", "cyclic", "plateau"),
    "power": ("polynomial",),
    "timescale": ("inverse_sqrt",),
    "mode": ("cyclic",),
    "anneal": ("one_cycle",),
    "div_factor": ("one_cycle",),
    "final_div_factor": ("one_cycle",),
    "decay_ratio": ("wsd",),
    "decay_shape": ("wsd",),
    "patience": ("plateau",),
    "threshold": ("plateau",),
    "cooldown": ("plateau",),
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "step": ("period",),
    "multistep": ("milestones",),
    "exponential": ("gamma",),
    "cosine_restarts": ("period",),
    "cyclic": ("period", "min_lr"),
}


class ScheduleSection(Section):
    name: ScheduleName = "linear"
    """`linear` (BERT's: decay to `min_lr` at the end), `constant`, `cosine` (half cosine to
    `min_lr`), `cosine_restarts` (SGDR), `step`, `multistep`, `exponential`, `polynomial`,
    `inverse_sqrt`, `cyclic` (CLR), `one_cycle`, `slanted_triangular` (ULMFiT), `wsd`
    (warmup-stable-decay) or `plateau` (cut the LR when the validation metric stalls). Each can
    start with a warmup; docs/schedules-and-regularization.md gives every formula."""

    warmup_ratio: float | None = Field(None, ge=0, lt=1)
    """Warmup length as a share of all optimizer steps, in [0, 1). Give this or `warmup_steps`.
    For `one_cycle` and `slanted_triangular` it is the rising phase (default 0.3 and 0.1)."""

    warmup_steps: int | None = Field(None, ge=0)
    """Warmup length in optimizer steps. Give this or `warmup_ratio`, not both."""

    warmup_type: Literal["linear", "exponential"] = "linear"
    """How warmup rises to the peak: `linear`, or `exponential` (geometric: the LR grows by the
    same factor every step, from `warmup_start` x peak)."""

    warmup_start: float | None = Field(None, ge=0, lt=1)
    """LR at step 0 as a share of the peak. Default 0 for linear warmup (BERT), 0.01 for exponential
    (which cannot start at 0)."""

    min_lr: float | None = Field(None, ge=0)
    """Floor of the decay, an absolute LR for groups at `optimizer.lr` (other groups scale with
    theirs): linear, cosine, cosine_restarts, polynomial, wsd and plateau (default 0); the lower end
    of `cyclic` (required); the lowest LR of `slanted_triangular` (default lr/32)."""

    unit: Literal["steps", "epochs"] = "steps"
    """What `period`, `milestones` and the `exponential` gamma count: optimizer `steps` or
    `epochs` (fractions allowed)."""

    period: float | None = Field(None, gt=0)
    """`step`: decay every `period`; `cosine_restarts`: length of the first cycle; `cyclic`: length of
    a full up-and-down cycle. In `unit`s (required for these schedules)."""

    cycle_mult: int | None = Field(None, ge=1)
    """`cosine_restarts`: each cycle is this many times longer than the one before (default 1)."""

    milestones: list[float] | None = None
    """`multistep`: when to multiply the LR by `gamma`, in `unit`s from the start of training,
    increasing (required)."""

    gamma: float | None = Field(None, gt=0, le=1)
    """Decay factor. `step`/`multistep`: LR x gamma at each decay (default 0.1); `exponential`: LR x
    gamma per `unit` (required); `cyclic` with mode `exp_range`: amplitude x gamma per step
    (default 1); `plateau`: LR x gamma at each plateau (default 0.1)."""

    power: float | None = Field(None, gt=0)
    """`polynomial`: exponent of the decay (default 1, which is linear)."""

    timescale: int | None = Field(None, gt=0)
    """`inverse_sqrt`: steps over which the LR falls by 1/sqrt(2) after warmup (default: the warmup
    length, as in Vaswani et al. 2017; 10000 without warmup)."""

    mode: Literal["triangular", "triangular2", "exp_range"] | None = None
    """`cyclic`: `triangular` (default), `triangular2` (amplitude halves every cycle) or `exp_range`
    (amplitude x gamma^step)."""

    anneal: Literal["cos", "linear"] | None = None
    """`one_cycle`: shape of both phases, `cos` (default) or `linear`."""

    div_factor: float | None = Field(None, ge=1)
    """`one_cycle`: the run starts at lr / div_factor (default 25)."""

    final_div_factor: float | None = Field(None, ge=1)
    """`one_cycle`: the run ends at lr / div_factor / final_div_factor (default 10000)."""

    decay_ratio: float | None = Field(None, gt=0, le=1)
    """`wsd`: share of all steps spent in the final decay (default 0.1); the LR is flat before it."""

    decay_shape: Literal["linear", "cosine", "1-sqrt"] | None = None
    """`wsd`: shape of the final decay (default `linear`; `1-sqrt` as in Hägele et al. 2024)."""

    patience: int | None = Field(None, ge=0)
    """`plateau`: evaluations without improvement of the watched metric (`early_stopping.metric`) to
    tolerate; the next one in a row multiplies the LR by `gamma` (torch's convention; default 1)."""

    threshold: float | None = Field(None, ge=0)
    """`plateau`: relative improvement that counts (default 1e-4, torch's)."""

    cooldown: int | None = Field(None, ge=0)
    """`plateau`: evaluations to wait after a cut before counting again (default 0)."""

    @field_validator(*APPLIES_TO, mode="after")
    @classmethod
    def _applies(cls, value: object, info: ValidationInfo) -> object:
        name = info.data.get("name")
        field = info.field_name
        default = cls.model_fields[field].default
        if name is None or value == default or name in APPLIES_TO[field]:
            return value
        users = ", ".join(f"`{n}`" for n in APPLIES_TO[field])
        shown = "null" if default is None else repr(default)
        raise ValueError(
            f"does not apply to schedule `{name}` (only to {users}); remove it or set it to {shown}"
        )

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, milestones: list[float] | None) -> list[float] | None:
        if milestones is not None:
            if not milestones:
                raise ValueError("give at least one milestone")
            if any(m <= 0 for m in milestones) or sorted(set(milestones)) != milestones:
                raise ValueError("milestones must be positive and strictly increasing")
        return milestones

    @model_validator(mode="after")
    def _consistent(self) -> "ScheduleSection":
        problems = []
        if self.warmup_ratio is not None and self.warmup_steps is not None:
            problems.append(
                "give `warmup_ratio` or `warmup_steps`, not both (set the other to null when overriding)"
            )
        for key in REQUIRED.get(self.name, ()):
            if getattr(self, key) is None:
                problems.append(f"schedule `{self.name}` needs `schedule.{key}`")
        if self.warmup_type == "exponential" and self.warmup_start == 0:
            problems.append("`warmup_start` must be above 0 for exponential warmup (it grows geometrically)")
        if self.unit == "steps" and self.period is not None and self.period != int(self.period):
            problems.append(f"`period` counts steps (unit: steps), so it must be whole, got {self.period}")
        if self.mode != "exp_range" and self.name == "cyclic" and self.gamma is not None:
            problems.append("`gamma` applies to `cyclic` only with `mode: exp_range`")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def uses_epochs(self) -> bool:
        """Whether the schedule needs the number of optimizer steps per epoch."""
        return self.unit == "epochs"
