"""`training:` how long, in what batches, at what precision, with which seed."""

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from finetune.errors import RecipeError

from .base import Auto, Section


class TrainingSection(Section):
    epochs: Annotated[float, Field(gt=0, le=1000)] | Auto = "auto"
    """Passes over the training data (fractions allowed). Ignored when `max_steps` is set. `auto`:
    3; for regression, more on small data sets, so that the run takes at least 150 optimizer steps
    (at most 10 epochs). A new regression head also starts at the training targets' mean
    (docs/defaults.md)."""

    max_steps: int | None = Field(None, gt=0)
    """Stop after this many optimizer steps; overrides `epochs` (the schedule spans these steps)."""

    batch_size: int = Field(32, gt=0)
    """Examples per device per forward pass. With `global_batch_size`, the most per device: a larger
    share is split into gradient-accumulation steps."""

    global_batch_size: int | None = Field(None, gt=0)
    """Examples per optimizer step over all processes; the same recipe then takes the same steps on
    1 or N devices (per-device batch and accumulation are derived). Give this or
    `gradient_accumulation_steps`, not both. Null: the global batch is batch_size x accumulation x processes."""

    gradient_accumulation_steps: int = Field(1, ge=1)
    """Forward passes per optimizer step; the effective batch is batch_size x this x processes."""

    seed: int = 42
    """Seed for weight init of new heads, data shuffling, dropout and the validation split."""

    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """`auto`: bf16 on GPUs that support it, fp16 (with loss scaling) on older GPUs; on a CPU, bf16 where
    it has bf16 instructions (AVX512-BF16 or AMX), else fp32. `bf16` also works on any CPU (autocast)."""

    group_by_length: bool = True
    """Batch examples of similar length together (less padding, faster; batches are still random in
    composition and order), and evaluate longest-first (predictions come back in data order)."""

    sampler: Literal["shuffle", "balanced"] = "shuffle"
    """Which training examples an epoch draws. `shuffle`: every example once, in random order.
    `balanced` (classification): as many examples as the training split has, drawn with
    replacement so that every class is equally likely (rare-class examples repeat, frequent ones
    are left out; a different draw every epoch). Both are seeded by (seed, epoch), the same on
    every process and after a resume, and length-grouped when `group_by_length` is on. Use it
    instead of `loss.class_weights`, not with it (both would correct the imbalance)."""

    cpu: bool = False
    """Train on the CPU even when a GPU is present."""

    logging_steps: int = Field(10, gt=0)
    """Log the training loss and learning rate every N optimizer steps."""

    dataloader_workers: int = Field(0, ge=0)
    """Data-loader worker processes (0 loads batches in the training process)."""

    pin_memory: bool = True
    """Put batches in page-locked host memory: faster copies to a GPU. No effect on CPU-only runs."""

    compile: bool = False
    """Compile the model with `torch.compile` (TorchInductor) before training. Pays off on GPUs for long
    runs; on CPUs and for short runs the compile time usually costs more than it saves (benchmarks/)."""

    prefix_cache: bool = False
    """Compute the frozen embeddings and the frozen bottom layers once per example and reuse their
    output in later epochs: from the second epoch on only the layers above run. Needs frozen embeddings
    and `freeze.eval_mode: true`; BERT-layout models (BERT, MiniLM, RoBERTa, XLM-R, CamemBERT). Gradual
    unfreezing drops the cache when it releases a cached layer."""

    prefix_cache_memory_mb: int = Field(4096, ge=0)
    """Memory for the prefix cache (on the training device); outputs past it go to a temporary file
    (in `TMPDIR`) and are read back from there."""

    gradient_checkpointing: bool = False
    """Recompute layer activations in the backward pass instead of storing them: much less memory, about
    20-30% slower. Non-reentrant checkpointing, so it works with frozen embeddings and frozen layers."""

    @model_validator(mode="after")
    def _one_batch_rule(self) -> "TrainingSection":
        if self.global_batch_size is not None and self.gradient_accumulation_steps != 1:
            raise ValueError(
                "give `global_batch_size` or `gradient_accumulation_steps`, not both "
                "(accumulation is derived from the global batch)"
            )
        return self

    def batch_plan(self, processes: int) -> tuple[int, int]:
        """(per-device batch, gradient-accumulation steps) for a number of processes.

        Without `global_batch_size` these are the recipe's values. With it, each process takes
        global / processes examples per optimizer step, in the fewest forward passes of at most
        `batch_size` examples that split it evenly.
        """
        if self.global_batch_size is None:
            return self.batch_size, self.gradient_accumulation_steps
        per_process, remainder = divmod(self.global_batch_size, processes)
        if remainder or per_process == 0:
            raise RecipeError(
                f"training.global_batch_size: {self.global_batch_size} cannot be split evenly over "
                f"{processes} processes; use a multiple of {processes}"
            )
        accumulation = -(-per_process // self.batch_size)  # ceil
        while per_process % accumulation:
            accumulation += 1
        return per_process // accumulation, accumulation


class EvaluationSection(Section):
    """`evaluation:` when the validation set is evaluated, in what batches, with which extra metrics."""

    every: Literal["epoch"] | int = "epoch"
    """Evaluate on the validation set every epoch (`epoch`) or every N optimizer steps (an integer)."""

    batch_size: int = Field(64, gt=0)
    """Examples per device per evaluation forward pass."""

    before_training: bool = True
    """Evaluate once before the first step, so the run shows where it started."""

    extra_metrics: list[str] = []
    """More metrics by `evaluate` name, `name:config` for a metric with configurations (e.g.
    `exact_match`, or `glue:mrpc` for GLUE's MRPC metric); they download code from the hub and run it,
    so they need internet and `trust_remote_code: true`. The built-in metrics (accuracy, f1, f1_macro,
    mcc, pearson, spearman, mse, ...) work offline and need neither."""

    trust_remote_code: bool = False
    """Allow `extra_metrics` to run code from the hub: `evaluate` downloads each metric's script and
    executes it in the training process. Off unless you trust those metrics' repositories (like
    `model.trust_remote_code` for model code); without it a hub metric is an error before training.
    A metric given as a path to a local script or folder needs no opt-in."""

    @field_validator("every")
    @classmethod
    def _positive_steps(cls, every: str | int) -> str | int:
        if isinstance(every, int) and every <= 0:
            raise ValueError(f"must be `epoch` or a positive number of steps, got {every}")
        return every

    @field_validator("extra_metrics")
    @classmethod
    def _metric_names(cls, names: list[str]) -> list[str]:
        for name in names:
            split_metric_name(name)
        return names


def split_metric_name(text: str) -> tuple[str, str | None]:
    """`glue:mrpc` -> ("glue", "mrpc"), `accuracy` -> ("accuracy", None): evaluate.load's two arguments.

    A slash is part of the name (`user/metric` is a metric on the hub), so a config needs the colon.
    """
    name, colon, config = text.partition(":")
    if not name.strip() or (colon and not config.strip()):
        raise ValueError(f"'{text}' is not a metric name: give `name` or `name:config` (e.g. `glue:mrpc`)")
    return name.strip(), config.strip() if colon else None
