"""`schedule:` how the learning rate moves over the run."""

from typing import Literal

from pydantic import Field, model_validator

from .base import Section


class ScheduleSection(Section):
    name: Literal["linear", "constant"] = "linear"
    """`linear`: warmup then linear decay to 0 (BERT's schedule). `constant`: warmup then flat."""

    warmup_ratio: float | None = Field(None, ge=0, lt=1)
    """Warmup length as a share of all optimizer steps, in [0, 1). Give this or `warmup_steps`."""

    warmup_steps: int | None = Field(None, ge=0)
    """Warmup length in optimizer steps. Give this or `warmup_ratio`, not both."""

    @model_validator(mode="after")
    def _one_warmup(self) -> "ScheduleSection":
        if self.warmup_ratio is not None and self.warmup_steps is not None:
            raise ValueError(
                "give `warmup_ratio` or `warmup_steps`, not both (set the other to null when overriding)"
            )
        return self
