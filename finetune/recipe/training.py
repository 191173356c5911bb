"""`training:` how long, in what batches, at what precision, with which seed."""

from typing import Literal

from pydantic import Field, field_validator

from .base import Section


class TrainingSection(Section):
    epochs: float = Field(3, gt=0, le=1000)
    """Passes over the training data (fractions allowed). Ignored when `max_steps` is set."""

    max_steps: int | None = Field(None, gt=0)
    """Stop after this many optimizer steps; overrides `epochs` (the schedule spans these steps)."""

    batch_size: int = Field(32, gt=0)
    """Examples per device per forward pass."""

    gradient_accumulation_steps: int = Field(1, ge=1)
    """Forward passes per optimizer step; the effective batch is batch_size x this x processes."""

    seed: int = 42
    """Seed for weight init of new heads, data shuffling, dropout and the validation split."""

    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """`auto`: bf16 on GPUs that support it, fp16 on older GPUs, fp32 on CPU. `bf16` also works on CPU."""

    group_by_length: bool = True
    """Batch examples of similar length together (less padding, faster); still shuffled between batches."""

    cpu: bool = False
    """Train on the CPU even when a GPU is present."""

    logging_steps: int = Field(10, gt=0)
    """Log the training loss and learning rate every N optimizer steps."""

    dataloader_workers: int = Field(0, ge=0)
    """Data-loader worker processes (0 loads batches in the training process)."""

    gradient_checkpointing: bool = False
    """Recompute layer activations in the backward pass instead of storing them: much less memory, about
    20-30% slower. Non-reentrant checkpointing, so it works with frozen embeddings and frozen layers."""


class EvaluationSection(Section):
    every: Literal["epoch"] | int = "epoch"
    """Evaluate on the validation set every epoch (`epoch`) or every N optimizer steps (an integer)."""

    batch_size: int = Field(64, gt=0)
    """Examples per device per evaluation forward pass."""

    before_training: bool = True
    """Evaluate once before the first step, so the run shows where it started."""

    extra_metrics: list[str] = []
    """More metrics by `evaluate` name (e.g. `glue/mrpc`); they download code from the hub and so need
    internet. The built-in metrics (accuracy, f1, f1_macro, mcc, pearson, spearman, mse) work offline."""

    @field_validator("every")
    @classmethod
    def _positive_steps(cls, every: str | int) -> str | int:
        if isinstance(every, int) and every <= 0:
            raise ValueError(f"must be `epoch` or a positive number of steps, got {every}")
        return every
