"""`guards:` what a run does when training goes wrong: non-finite losses and diverging metrics."""

from typing import Literal

from pydantic import Field

from .base import Section


class DivergenceLimit(Section):
    metric: str = "loss"
    """Validation metric to watch: `loss` or any metric the task reports (accuracy, f1, pearson, ...)."""

    threshold: float
    """Stop when the metric is worse than this: above it for `loss`/`mse`, below it for the others.
    The evaluation before training does not count."""


class GuardsSection(Section):
    nonfinite_loss: Literal["stop", "skip"] = "stop"
    """A training loss that is NaN or infinite: `stop` the run at that step (the update is not applied,
    the best weights are kept, the exit status is non-zero), or `skip` that optimizer step and go on."""

    max_skipped_steps: int = Field(10, ge=1)
    """With `nonfinite_loss: skip`: stop anyway after this many skipped steps in one run."""

    divergence: DivergenceLimit | None = None
    """Stop when a validation metric crosses a threshold, e.g. `{metric: loss, threshold: 2.0}`."""
