"""Callbacks: behaviour that reacts to training events, one small class each.

- `EarlyStopping`: watch a validation metric, stop after `patience` evaluations without
  improvement, and restore the best weights at the end.
- `JsonlLogger`: append every log and evaluation to `metrics.jsonl`.
- `RecipeProgress`: progress bars with loss/LR on the bar and one summary line per evaluation.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

from finetune.distributed.sharding import load_weights, snapshot
from finetune.errors import FinetuneError
from finetune.recipe import Recipe

EVAL_PREFIX = "eval_"


class EarlyStopping(TrainerCallback):
    """Stop when the watched validation metric stops improving; keep and restore the best weights.

    Patience counts evaluations (not epochs). An improvement must beat the best value by more
    than `min_delta` (absolute, or a fraction of the best when `relative`). The evaluation before
    training (step 0) makes the starting weights the first candidate: a run that only gets worse
    (a diverging LR) ends with the weights it started from, never with damaged ones marked best;
    it does not count towards patience. A later evaluation that ties the best takes its place (more
    training at a lower LR, the same validation score) without resetting patience: on a small
    validation split ties are common, and the earlier weights scored worse on held-out data
    (docs/defaults.md). A tie never displaces the starting weights, though: training must beat them
    (a diverging LR leaves accuracy at chance, tying a start at chance, with wrecked weights).
    With `enabled=False` the run is never stopped early, but
    the best evaluated weights are still restored at the end.
    """

    def __init__(
        self,
        metric: str,
        greater_is_better: bool,
        patience: int,
        min_delta: float = 0.0,
        relative: bool = False,
        enabled: bool = True,
    ) -> None:
        self.metric = metric
        self.greater_is_better = greater_is_better
        self.patience = patience
        self.min_delta = min_delta
        self.relative = relative
        self.enabled = enabled
        self.best: float | None = None
        self.best_step: int | None = None
        self.best_epoch: float | None = None
        self.evaluations_without_improvement = 0
        self.stopped_at_step: int | None = None
        self.best_state: dict[str, Any] | None = None
        self.restored = False
        self.training_over = False
        self.last_evaluation: tuple[int, dict[str, float]] | None = None  # (step, metrics) in training

    def is_improvement(self, value: float) -> bool:
        if not math.isfinite(value):  # a NaN would stay "best": nothing compares better than it
            return False
        if self.best is None:
            return True
        margin = self.min_delta * abs(self.best) if self.relative else self.min_delta
        if self.greater_is_better:
            return value > self.best + margin
        return value < self.best - margin

    def watched_value(self, metrics: dict[str, float] | None) -> float:
        key = EVAL_PREFIX + self.metric
        if key not in (metrics or {}):
            reported = sorted(k[len(EVAL_PREFIX) :] for k in (metrics or {}) if k.startswith(EVAL_PREFIX))
            raise FinetuneError(
                f"early_stopping.metric: evaluation did not report '{self.metric}' (it reported: {', '.join(reported)})"
            )
        return float(metrics[key])

    def keep(self, value: float, state: Any, model: Any) -> None:
        """Make these weights the best so far (a CPU copy, restored at the end; each process keeps its
        own shards of a sharded model)."""
        self.best, self.best_step, self.best_epoch = value, state.global_step, state.epoch or 0.0
        self.best_state = snapshot(model)

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        if self.training_over:  # the re-check of the restored weights is not a candidate
            return
        value = self.watched_value(metrics)
        self.last_evaluation = (state.global_step, dict(metrics))
        if state.global_step == 0:  # the starting weights: a candidate that costs no patience
            if self.best is None and math.isfinite(value):
                self.keep(value, state, model)
            return
        if self.is_improvement(value):
            self.keep(value, state, model)
            self.evaluations_without_improvement = 0
            return
        if value == self.best and self.best_step != 0:  # a tie goes to the later, longer-trained weights
            self.keep(value, state, model)
        self.evaluations_without_improvement += 1
        if self.enabled and self.evaluations_without_improvement >= self.patience:
            control.should_training_stop = True
            self.stopped_at_step = state.global_step

    def scored_restored_weights(self) -> dict[str, float] | None:
        """The metrics of the last evaluation in training when the restored weights are the ones it
        scored (the best was the last evaluation, after step 0): evaluating them again repeats it."""
        if not self.restored or self.last_evaluation is None or not self.best_step:
            return None
        step, metrics = self.last_evaluation
        return metrics if step == self.best_step else None

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.training_over = True
        if self.best_state is not None and model is not None:
            load_weights(model, self.best_state)
            self.restored = True

    # The scalar state a checkpoint records; the best weights (`best_state`) are saved beside it
    # as a model folder by `training/checkpoints.py`, which also puts them back on resume.
    _STATE_KEYS = ("best", "best_step", "best_epoch", "evaluations_without_improvement", "stopped_at_step")

    def state_dict(self) -> dict[str, Any]:
        """Best value and step, and the patience counter (JSON-serialisable)."""
        return {key: getattr(self, key) for key in self._STATE_KEYS}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in self._STATE_KEYS:
            setattr(self, key, state[key])

    def stop_reason(self) -> str:
        if self.stopped_at_step is not None:
            return (
                f"early stopping at step {self.stopped_at_step}: {self.metric} did not improve for "
                f"{self.patience} evaluations"
            )
        return "completed the planned steps"


class JsonlLogger(TrainerCallback):
    """Append every training log and evaluation, with step and epoch, to a JSON-lines file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        record = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), **logs}
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


PER_CLASS_SHOWN = 3  # more classes than this: their recall_<label> stay in metrics.jsonl, off the console


def format_metrics(metrics: dict[str, float], prefix: str = EVAL_PREFIX) -> str:
    """`loss 0.412 | accuracy 0.871 | f1 0.864` from a metrics dict, skipping timing entries (and the
    per-class recalls of a task with many classes: one line per evaluation stays readable)."""
    skip = ("runtime", "samples_per_second", "steps_per_second", "epoch", "preparation_time", "tokens_seen")
    named = {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in metrics.items()}
    per_class = [n for n in named if n.startswith("recall_")]
    parts = []
    for name, value in named.items():
        if any(name.endswith(s) for s in skip) or not isinstance(value, (int, float)):
            continue
        if name in per_class and len(per_class) > PER_CLASS_SHOWN:
            continue
        parts.append(f"{name} {value:.4f}")
    return " | ".join(parts)


class RecipeProgress(ProgressCallback):
    """A progress bar showing loss and LR, and one readable line per evaluation."""

    def __init__(self, early_stopping: EarlyStopping | None = None) -> None:
        super().__init__()
        self.early_stopping = early_stopping

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or self.training_bar is None:
            return
        if "loss" in logs:
            self.training_bar.set_postfix(
                loss=f"{logs['loss']:.4f}", lr=f"{logs.get('learning_rate', 0):.2e}"
            )

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        super().on_evaluate(args, state, control, **kwargs)
        # Evaluations outside training (before and after) are reported by the pipeline.
        if not state.is_world_process_zero or not metrics or self.training_bar is None:
            return
        marker = ""
        stopper = self.early_stopping
        if stopper is not None and stopper.best_step == state.global_step and state.global_step > 0:
            marker = "  * best"
        line = (
            f"eval step {state.global_step} (epoch {state.epoch or 0:.2f}): {format_metrics(metrics)}{marker}"
        )
        self.training_bar.write(line)


def recipe_callbacks(recipe: Recipe, train_set: Any) -> list[TrainerCallback]:
    """The callbacks the recipe's schedule and regularization ask for, in the order they run after
    early stopping's (so SWA's averaged weights replace the restored best ones)."""
    from finetune.regularization.augment import AugmentationEpoch, AugmentedTexts
    from finetune.regularization.clipping import ClipGradValue
    from finetune.regularization.swa import StochasticWeightAveraging
    from finetune.schedules.scheduler import ReduceOnPlateau

    spec, found = recipe.regularization, []
    if recipe.schedule.name == "plateau":
        found.append(ReduceOnPlateau(recipe.early_stopping.watched_metric(recipe.model.task)))
    if spec.clip_grad_value is not None:
        found.append(ClipGradValue(spec.clip_grad_value))
    if isinstance(train_set, AugmentedTexts):
        found.append(AugmentationEpoch(train_set))
    if spec.swa_start is not None:
        found.append(StochasticWeightAveraging(spec.swa_start, spec.swa_every))
    return found


class FirstStepClock(TrainerCallback):
    """The wall-clock time at which this run's first optimizer step ended: start-up is everything
    before it (imports, data, tokenization, model, an evaluation before training)."""

    def __init__(self) -> None:
        self.first_step_at: float | None = None

    def on_step_end(self, args, state, control, **kwargs):
        if self.first_step_at is None:
            self.first_step_at = time.time()


def process_started_at() -> float:
    """When this process was created (the command's start), in `time.time()` seconds."""
    import psutil

    return psutil.Process().create_time()
