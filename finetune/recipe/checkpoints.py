"""`checkpoints:` when a run saves its full training state, how many it keeps, and resuming."""

from typing import Literal

from pydantic import Field

from .base import Section


class CheckpointsSection(Section):
    every_steps: int | None = Field(None, gt=0)
    """Save a checkpoint every N optimizer steps; null saves none by step count."""

    every_epoch: bool = True
    """Save a checkpoint at the end of every epoch. With `every_steps: null` and `every_epoch: false`
    the run saves a checkpoint only when it is stopped by SIGINT/SIGTERM."""

    keep_last: int = Field(1, ge=1)
    """How many of the newest checkpoints to keep; older ones are deleted once a newer one is complete.
    The best weights they refer to are kept beside them in `checkpoints/best-<step>/`."""

    keep_after_training: bool = False
    """Keep `checkpoints/` when the run completes (to continue it later). By default a completed run
    deletes them, since `model/` holds the best weights; interrupted or failed runs always keep theirs."""

    resume: Literal["never", "auto"] = "never"
    """`auto`: when `output.dir` already holds a checkpoint of this recipe, continue from it instead of
    refusing the folder (for preemptible jobs that re-run the same command). `never`: resume only with
    `finetune train --resume RUN_DIR`. Needs a fixed `output.dir`."""

    @property
    def periodic(self) -> bool:
        """Whether checkpoints are saved on a schedule (not only when the run is stopped)."""
        return self.every_steps is not None or self.every_epoch
