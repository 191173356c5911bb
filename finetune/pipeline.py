"""`finetune train`, top to bottom: recipe -> data -> model -> trainer -> run folder.

Each step is one call into the module that owns it; reading `train` from top to bottom tells
the whole story of a run. Everything that can fail because of user input fails before the
first optimizer step.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .callbacks import EarlyStopping, JsonlLogger, RecipeProgress, format_metrics
from .data import TaskData, load_task_data, tokenize
from .errors import FinetuneError
from .freezing import FreezeSummary, apply_freeze
from .metrics import check_watched_metric, metrics_function
from .modeling import load_model, load_tokenizer
from .plots import plot_run
from .recipe import Recipe
from .runs import (
    METRICS_FILE,
    MODEL_DIR,
    create_run_dir,
    environment,
    peak_rss_mb,
    read_metrics,
    write_recipe,
    write_results,
)


@dataclass
class RunResult:
    run_dir: Path
    results: dict[str, Any]
    trainer: Any = field(repr=False, default=None)


def say(message: str) -> None:
    print(message, flush=True)


def freeze_model(model: Any, recipe: Recipe) -> FreezeSummary:
    """Apply `reinit:` and `freeze:`, and make the gradual-unfreezing callback when the recipe has one.

    Models of unknown architecture are fine unless a rule needs their blocks (regexes work for any).
    """
    from .anatomy import known_anatomy, model_anatomy
    from .freezing import needs_anatomy
    from .reinit import reinitialize

    layered = needs_anatomy(recipe.freeze) or recipe.reinit.is_active() or recipe.layer_lr.is_active()
    anatomy = model_anatomy(model) if layered else known_anatomy(model)
    notes: list[str] = []
    if recipe.reinit.is_active():
        blocks = reinitialize(model, recipe.reinit, anatomy, recipe.training.seed, notes)
        notes.append(f"re-initialised: {', '.join(blocks)}")
    summary = apply_freeze(model, recipe.freeze, anatomy)
    summary.notes[:0] = notes
    if summary.pending:
        from .unfreezing import GradualUnfreezing

        summary.unfreezing = GradualUnfreezing(
            model, summary.pending, recipe.freeze.gradual, summary.eval_guard
        )
    return summary


def build_trainer(
    recipe: Recipe,
    model: Any,
    tokenizer: Any,
    data: TaskData,
    run_dir: Path,
    callbacks: list[Any] | None = None,
) -> tuple[Any, EarlyStopping]:
    """The RecipeTrainer with tokenized data, metrics and the recipe's callbacks."""
    from transformers import DataCollatorWithPadding

    from .trainer import RecipeTrainer, training_arguments

    max_length = recipe.data.max_length
    train_set = tokenize(data.train, tokenizer, max_length)
    eval_set = tokenize(data.validation, tokenizer, max_length)
    stopping = recipe.early_stopping
    task = recipe.model.task
    early = EarlyStopping(
        metric=stopping.watched_metric(task),
        greater_is_better=stopping.greater_is_better(task),
        patience=stopping.patience,
        min_delta=stopping.min_delta,
        relative=stopping.relative,
        enabled=stopping.enabled,
    )
    trainer = RecipeTrainer(
        recipe,
        model=model,
        args=training_arguments(recipe, run_dir / "checkpoints"),
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=metrics_function(task, data.num_labels, recipe.evaluation.extra_metrics),
        callbacks=[early, JsonlLogger(run_dir / METRICS_FILE), RecipeProgress(early), *(callbacks or [])],
    )
    return trainer, early


def check_evaluation_cadence(recipe: Recipe, planned_steps: int) -> None:
    """Fail before training when step-based evaluation would never run (no best weights, no stopping)."""
    every = recipe.evaluation.every
    if every != "epoch" and every > planned_steps:
        raise FinetuneError(
            f"evaluation.every: {every} steps, but this run has only {planned_steps} optimizer steps, so it "
            f"would never evaluate; set evaluation.every to at most {planned_steps} (or `epoch`)"
        )


@dataclass
class Prepared:
    """Everything a run needs, built and checked before the first optimizer step."""

    data: TaskData
    model: Any
    frozen: FreezeSummary
    trainer: Any
    early: EarlyStopping
    metric: str


def prepare(recipe: Recipe, run_dir: Path, callbacks: list[Any] | None = None) -> Prepared:
    """Load and check data, model and trainer; every user error surfaces here, before training."""
    from transformers import set_seed

    set_seed(recipe.training.seed)
    task = recipe.model.task
    data = load_task_data(recipe.data, task, recipe.training.seed)
    metric = recipe.early_stopping.watched_metric(task)
    check_watched_metric(metric, task, data.num_labels, recipe.evaluation.extra_metrics)
    say(
        f"data: {len(data.train):,} training and {len(data.validation):,} validation examples"
        + (f", labels {data.label_names}" if data.label_names else ", regression target")
    )

    tokenizer = load_tokenizer(recipe.model)
    model = load_model(recipe.model, data.num_labels, data.label_names, recipe.regularization)
    frozen = freeze_model(model, recipe)
    say(f"model: {recipe.model.name} ({model.config.model_type}); {frozen.line()}")
    if getattr(model, "new_parameters", None):
        say(f"new (randomly initialised) parameters: {', '.join(model.new_parameters)}")
    if frozen.frozen_blocks:
        say(f"frozen: {', '.join(frozen.frozen_blocks)}")
    for note in frozen.notes:
        say(note)
    if frozen.pending:
        say(f"gradual unfreezing, top-down: {', '.join(frozen.pending)}")

    layer_callbacks = [frozen.unfreezing] if frozen.unfreezing is not None else []
    trainer, early = build_trainer(
        recipe, model, tokenizer, data, run_dir, [*layer_callbacks, *(callbacks or [])]
    )
    check_evaluation_cadence(recipe, trainer.planned_steps())
    return Prepared(data=data, model=model, frozen=frozen, trainer=trainer, early=early, metric=metric)


def train(recipe: Recipe, source: str | None = None, callbacks: list[Any] | None = None) -> RunResult:
    """Run a recipe end to end and write its run folder.

    `callbacks` are extra `TrainerCallback`s (e.g. a sweep's pruning reporter), run after ours.
    A user error found while preparing removes the run folder this call created (it holds nothing
    yet but the recipe), so a failed start leaves no half-made run behind.
    """
    started = time.time()
    run_dir = create_run_dir(recipe)
    write_recipe(run_dir, recipe, source)
    say(f"run folder: {run_dir}")
    try:
        run = prepare(recipe, run_dir, callbacks)
    except FinetuneError:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    trainer, early = run.trainer, run.early

    initial = trainer.evaluate() if recipe.evaluation.before_training else {}
    if initial:
        say(f"before training: {format_metrics(initial)}")
    train_started = time.time()
    output = trainer.train()
    train_seconds = time.time() - train_started
    final = trainer.evaluate()  # the restored best weights, checked once more
    if early.restored:
        say(f"after training (best weights, step {early.best_step}): {format_metrics(final)}")

    if recipe.output.save_model:
        save_model(trainer, run_dir / MODEL_DIR)
    results = collect_results(
        recipe, run.data, run.frozen, trainer, early, initial, final, output, train_seconds
    )
    results["wall_seconds"] = round(time.time() - started, 2)
    write_results(run_dir, results)
    if recipe.output.plots:
        plot_run(run_dir, read_metrics(run_dir), watched=run.metric)
    say(
        f"{early.stop_reason()}; best {run.metric} {early.best} at step {early.best_step}. Results: {run_dir}"
    )
    return RunResult(run_dir=run_dir, results=results, trainer=trainer)


def save_model(trainer: Any, folder: Path) -> None:
    """Save the (best) model and tokenizer in Hugging Face format, safetensors only."""
    trainer.save_model(str(folder))
    (folder / "training_args.bin").unlink(missing_ok=True)  # a pickle; the recipe says it all


def collect_results(
    recipe: Recipe,
    data: TaskData,
    frozen: FreezeSummary,
    trainer: Any,
    early: EarlyStopping,
    initial: dict[str, float],
    final: dict[str, float],
    output: Any,
    train_seconds: float,
) -> dict[str, Any]:
    """What `results.json` records about a finished run."""
    import torch

    state = trainer.state
    samples = output.metrics.get("train_samples_per_second")
    tokens_seen = getattr(state, "num_input_tokens_seen", 0) or 0
    results: dict[str, Any] = {
        "recipe": recipe.name,
        "task": recipe.model.task,
        "model": recipe.model.name,
        "labels": data.label_names,
        "data": {"train": len(data.train), "validation": len(data.validation), "sources": data.sources},
        "trainable_parameters": frozen.trainable,
        "total_parameters": frozen.total,
        "frozen_blocks": frozen.frozen_blocks,
        "unfrozen_during_training": frozen.unfreezing.history if frozen.unfreezing is not None else [],
        "metric": early.metric,
        "best": {"value": early.best, "step": early.best_step, "epoch": early.best_epoch},
        "stop_reason": early.stop_reason(),
        "initial_metrics": _strip(initial),
        "final_metrics": _strip(final),
        "steps": state.global_step,
        "epochs": round(state.epoch or 0.0, 4),
        "train_seconds": round(train_seconds, 2),
        "train_samples_per_second": samples,
        "train_tokens_per_second": round(tokens_seen / train_seconds, 1) if train_seconds else None,
        "train_loss": output.metrics.get("train_loss"),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "environment": environment(),
    }
    if torch.cuda.is_available():
        results["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return results


def _strip(metrics: dict[str, float]) -> dict[str, float]:
    """Validation metrics without the `eval_` prefix and the Trainer's timing/bookkeeping entries."""
    noise = ("runtime", "per_second", "preparation_time", "tokens_seen", "epoch")
    return {k.removeprefix("eval_"): v for k, v in metrics.items() if not k.endswith(noise)}
