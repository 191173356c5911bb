"""`finetune train`, top to bottom: recipe -> data -> model -> trainer -> run folder.

Each step is one call into the module that owns it; reading `train` from top to bottom tells
the whole story of a run. Everything that can fail because of user input fails before the
first optimizer step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetune.calibration.calibrate import calibrate_run
from finetune.data.class_weights import weight_vector
from finetune.data.columns import LABEL, column_values
from finetune.data.splits import TaskData
from finetune.data.task_data import load_task_data
from finetune.data.tokens import token_collator, tokenize_words
from finetune.data.windows import encode_splits
from finetune.distill.teacher import distill_teacher
from finetune.distributed.processes import (
    is_main_process,
    process_count,
    quiet_unless_main,
    replica_fingerprints,
    say,
)
from finetune.distributed.sharding import shard_model, shards_model
from finetune.errors import FinetuneError
from finetune.layers.freezing import FreezeSummary, summarize
from finetune.layers.surgery import apply_layer_sections
from finetune.model.loading import check_max_length, load_model, load_tokenizer, start_regression_at_mean
from finetune.model.peft import add_adapters, describe_adapters, save_adapted
from finetune.recipe import Recipe
from finetune.runs.folders import (
    METRICS_FILE,
    MODEL_DIR,
    changed_data_files,
    record_data_files,
    write_recipe,
    write_results,
)
from finetune.runs.resume import ResumePoint, discard_unstarted_run, saved_recipe
from finetune.training.arguments import batch_line
from finetune.training.callbacks import (
    EarlyStopping,
    JsonlLogger,
    RecipeProgress,
    format_metrics,
    recipe_callbacks,
)
from finetune.training.checkpoints import CheckpointCadence, open_run_dir, remove_checkpoints
from finetune.training.defaults import adopt_resolved, resolve_auto, resolve_class_weights
from finetune.training.guards import FaultGuard
from finetune.training.learning_check import (
    Baseline,
    constant_baseline,
    warning_text,
)
from finetune.training.metrics import (
    check_metric_code,
    check_reported_metric,
    check_watched_metric,
    metrics_function,
)
from finetune.training.results import check_learning, collect_results, save_model, stop_run, write_documents


@dataclass
class RunResult:
    run_dir: Path
    results: dict[str, Any]
    trainer: Any = field(repr=False, default=None)


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

    from finetune.training.arguments import point_tensorboard_at, training_arguments
    from finetune.training.trainer import RecipeTrainer

    max_length = recipe.data.max_length
    words = recipe.model.task == "token_classification"  # word lists, labels aligned to sub-words
    if words:
        train_set, eval_set = (
            tokenize_words(s, tokenizer, max_length) for s in (data.train, data.validation)
        )
    else:  # truncated or windowed (data.long_documents), and measured: data/windows.py
        train_set, eval_set = encode_splits(data, tokenizer, recipe.data)
    if recipe.regularization.augments_text:  # new word deletions/swaps every epoch, train only
        from finetune.regularization.augment import AugmentedTexts

        train_set = AugmentedTexts(
            data.train, tokenizer, max_length, recipe.regularization, recipe.training.seed
        )
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
    weights = recipe.loss.class_weights
    trainer = RecipeTrainer(
        recipe,
        class_weights=weight_vector(weights, data.label_names) if isinstance(weights, dict) else None,
        train_labels=column_values(data.train, LABEL) if recipe.training.sampler == "balanced" else None,
        teacher=distill_teacher(recipe, data, train_set, tokenizer),  # None without `distill:`
        model=model,
        args=training_arguments(recipe, run_dir / "checkpoints"),
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        data_collator=token_collator(tokenizer) if words else DataCollatorWithPadding(tokenizer),
        compute_metrics=metrics_function(
            task,
            data.num_labels,
            recipe.evaluation.extra_metrics,
            threshold=recipe.model.decision_threshold,
            label_names=data.label_names,
            trust_remote_code=recipe.evaluation.trust_remote_code,
        ),
        callbacks=[
            early,
            JsonlLogger(run_dir / METRICS_FILE),
            RecipeProgress(early),
            *(callbacks or []),
            *recipe_callbacks(recipe, train_set),
        ],
    )
    point_tensorboard_at(trainer, run_dir / "tensorboard")  # when output.report_to has tensorboard
    return trainer, early


def check_evaluation_cadence(recipe: Recipe, planned_steps: int) -> None:
    """Fail before training when step-based evaluation would not run during training.

    The Trainer still evaluates once after the last step, but a single evaluation at the end leaves
    early stopping nothing to compare: it could never stop the run or keep earlier, better weights.
    """
    every = recipe.evaluation.every
    if every != "epoch" and every > planned_steps:
        raise FinetuneError(
            f"evaluation.every: {every} steps, but this run has only {planned_steps} optimizer steps, so it "
            f"would evaluate only once, after the last step, and early stopping could neither stop the run "
            f"nor keep earlier weights; set evaluation.every to at most {max(1, planned_steps // 2)} "
            f"(or `epoch`)"
        )


@dataclass
class Prepared:
    """Everything a run needs, built and checked before the first optimizer step."""

    recipe: Recipe  # with every `auto` value resolved (training/defaults.py)
    data: TaskData
    model: Any
    frozen: FreezeSummary
    trainer: Any
    early: EarlyStopping
    metric: str
    adapted: Any = None  # the peft wrapper of `model` when `peft:` is on (used to save)
    baseline: Baseline | None = None  # the constant answer's validation metrics (training/learning_check.py)


def prepare(recipe: Recipe, run_dir: Path, callbacks: list[Any] | None = None) -> Prepared:
    """Load and check data, model and trainer; every user error surfaces here, before training."""
    from transformers import set_seed

    set_seed(recipe.training.seed)
    check_metric_code(recipe.evaluation.extra_metrics, recipe.evaluation.trust_remote_code)
    task = recipe.model.task
    data = load_task_data(recipe.data, task, recipe.training.seed)
    metric = recipe.early_stopping.watched_metric(task)
    check_watched_metric(metric, task, data.num_labels, recipe.evaluation.extra_metrics, data.label_names)
    say(
        f"data: {len(data.train):,} training and {len(data.validation):,} validation examples"
        + (f", labels {data.label_names}" if data.label_names else ", regression target")
    )
    weighted = resolve_class_weights(recipe, column_values(data.train, LABEL), data.label_names)
    recipe = weighted.recipe
    for note in weighted.notes:
        say(note)

    tokenizer = load_tokenizer(recipe.model)
    model = load_model(recipe.model, data.num_labels, data.label_names, recipe.regularization)
    check_max_length(recipe.data.max_length, model.config, tokenizer, recipe.model.name)
    resolution = resolve_auto(recipe, model.config, len(data.train), process_count())
    recipe = resolution.recipe
    for note in resolution.notes:
        say(note)
    if task == "regression":
        started = start_regression_at_mean(model, column_values(data.train, LABEL))
        if started:
            say(started)
    head = list(getattr(model, "new_parameters", []))  # reinit adds its blocks; the notes name those
    frozen = apply_layer_sections(model, recipe)
    adapted = add_adapters(model, recipe.peft, task, frozen.frozen_blocks)
    if adapted is not None:  # peft froze the pretrained weights: count again
        counted = summarize(model)
        frozen.trainable, frozen.total = counted.trainable, counted.total
        say(f"peft: {describe_adapters(adapted)}")
    if recipe.regularization.mixout > 0:  # before the Trainer places the model (its anchors are buffers)
        from finetune.regularization.mixout import apply_mixout

        apply_mixout(model, recipe.regularization.mixout)
    if shards_model(recipe.distributed):  # last: the units hold the layers as surgery left them
        say(shard_model(model, recipe.distributed.fsdp_options))
    say(f"model: {recipe.model.name} ({model.config.model_type}); {frozen.line()}")
    if head:
        say(f"new (randomly initialised) parameters: {', '.join(head)}")
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
    if recipe.evaluation.extra_metrics:  # what they report is known only once they run
        sample = data.validation.select(range(min(len(data.validation), 64)))
        check_reported_metric(
            metric, task, data.num_labels, trainer.compute_metrics, column_values(sample, LABEL)
        )
    baseline = constant_baseline(
        task,
        column_values(data.train, LABEL),
        column_values(data.validation, LABEL),
        data.num_labels,
        trainer.compute_metrics,
        data.label_names,
    )
    if baseline is not None:
        say(f"constant answer, {baseline.answer}: {format_metrics(baseline.metrics)}")
    return Prepared(
        baseline=baseline,
        recipe=recipe,
        data=data,
        model=model,
        frozen=frozen,
        trainer=trainer,
        early=early,
        metric=metric,
        adapted=adapted,
    )


def train(
    recipe: Recipe,
    source: str | None = None,
    callbacks: list[Any] | None = None,
    resume: str | Path | None = None,
    allow_recipe_change: bool = False,
) -> RunResult:
    """Run a recipe end to end and write its run folder.

    `callbacks` are extra `TrainerCallback`s (e.g. a sweep's pruning reporter), run after ours.
    Any failure before the first training step (a user error found while preparing, Ctrl-C, a crash)
    removes the run folder this call created, unless it holds a checkpoint or a file the run did not
    write (checkpoints.discard_unstarted_run): the same command can run again. `resume` continues a
    run folder from its newest checkpoint (see training/checkpoints.py). A run stopped by a signal, a
    non-finite loss or a diverging metric writes what it knows and raises (training/guards.py).
    """
    started = time.time()
    quiet_unless_main()
    run_dir, point, changes = open_run_dir(recipe, source, resume, allow_recipe_change)
    try:
        return run_in(run_dir, point, changes, recipe, source, callbacks, started)
    except BaseException:
        if point is None and is_main_process() and discard_unstarted_run(run_dir):
            say(f"run folder {run_dir} removed: the run stopped before its first training step")
        raise


def run_in(
    run_dir: Path,
    point: ResumePoint | None,
    changes: list[str],
    recipe: Recipe,
    source: str | None,
    callbacks: list[Any] | None,
    started: float,
) -> RunResult:
    """Train in an opened run folder (new, or resumed from `point`): the body of `train`."""
    say(f"run folder: {run_dir}" + (f" (resuming from {point.checkpoint.name})" if point else ""))
    guard = FaultGuard(recipe.guards, recipe.model.task)
    if point is not None:  # `auto` keys take the values the run was started with
        recipe = adopt_resolved(recipe, saved_recipe(run_dir))
    run = prepare(recipe, run_dir, [CheckpointCadence(recipe.checkpoints), guard, *(callbacks or [])])
    if run.recipe is not recipe and is_main_process():  # recipe.yaml records the values used
        write_recipe(run_dir, run.recipe, source)
    recipe = run.recipe
    trainer, early = run.trainer, run.early
    check_data_files(run_dir, run.data.sources, resumed=point is not None)
    if run.frozen.unfreezing is not None:  # DDP does not average layers unfrozen after it wrapped the model
        run.frozen.unfreezing.on_unfreeze.append(lambda blocks, params: trainer.late_parameters.add(params))
        run.frozen.unfreezing.verbose = run.frozen.unfreezing.verbose and is_main_process()
    say(batch_line(trainer))
    say(trainer.speed_line())

    if point is None:
        initial = trainer.evaluate() if recipe.evaluation.before_training else {}
        resumes = []
    else:
        initial = point.state.get("initial_metrics", {})
        resumes = [*point.state.get("resumes", []), {"step": point.step, "recipe_changes": changes}]
    if initial and point is None:
        say(f"before training: {format_metrics(initial)}")
    trainer.run_state = {"initial_metrics": initial, "resumes": resumes}
    train_started = time.time()
    try:
        output = trainer.train(resume_from_checkpoint=str(point.checkpoint) if point else None)
    finally:
        guard.restore_signal_handlers()
    train_seconds = time.time() - train_started
    if guard.stopped_by is not None:
        stop_run(recipe, run, run_dir, guard, initial, output, train_seconds)
    # the restored best weights, scored: by the evaluation that chose them when it was the last one
    # (SWA replaces them with the average, which needs its own evaluation)
    reused = early.scored_restored_weights() if trainer.swa is None else None
    final = reused if reused is not None else trainer.evaluate()
    if trainer.swa is not None:
        say(f"{trainer.swa.describe()}: {format_metrics(final)}")
    elif early.restored:
        again = " (that evaluation, not repeated)" if reused is not None else ""
        say(f"after training (best weights, step {early.best_step}){again}: {format_metrics(final)}")
    check = check_learning(run, final, initial)
    if not check["learned"]:
        say(warning_text(check))
    # temperature scaling on the validation logits, folded into the head before it is saved
    calibration = calibrate_run(
        recipe, run.model, trainer, len(run.data.validation), run.data.num_labels, early.best_step
    )

    # several processes holding whole replicas: a hash of each one's final weights (all take part)
    fingerprints = replica_fingerprints(trainer.model, recipe.distributed)
    if recipe.output.save_model and run.adapted is not None:
        if is_main_process():
            save_adapted(run.adapted, run_dir / MODEL_DIR, recipe.peft.save, trainer.processing_class)
    elif recipe.output.save_model:
        save_model(trainer, run_dir / MODEL_DIR)
    results = collect_results(
        recipe, run.data, run.frozen, trainer, early, initial, final, output, train_seconds
    )
    results.update(status="completed", resumes=resumes, weights_fingerprints=fingerprints)
    results["final_evaluation"] = (
        f"reused the evaluation at step {early.best_step}" if reused else "evaluated"
    )
    results["learning_check"] = check
    if recipe.loss.active:  # the numbers trained with (recipe.yaml has them too)
        results["loss"] = recipe.loss.model_dump(mode="json")
    if calibration is not None:
        results["calibration"] = calibration
    results["skipped_steps"] = guard.skipped_steps  # non-finite losses skipped (guards.nonfinite_loss)
    if trainer.prefix_cache is not None:
        results["prefix_cache"] = trainer.prefix_cache.summary()
    if trainer.swa is not None:  # final_metrics are those of the averaged weights
        results["swa"] = trainer.swa.summary()
    results["long_texts"] = run.data.long_texts  # texts longer than max_length, per split (data/windows.py)
    results["wall_seconds"] = round(time.time() - started, 2)
    if is_main_process():
        write_results(run_dir, results)
        write_documents(run_dir, run)
        if not recipe.checkpoints.keep_after_training:
            remove_checkpoints(run_dir)
    say(
        f"{early.stop_reason()}; best {run.metric} {early.best} at step {early.best_step}. Results: {run_dir}"
    )
    return RunResult(run_dir=run_dir, results=results, trainer=trainer)


def check_data_files(run_dir: Path, sources: dict[str, str], resumed: bool) -> None:
    """Record the data files' hashes in a new run; on resume, warn when one has changed since."""
    if not is_main_process():
        return
    if not resumed:
        record_data_files(run_dir, sources)
        return
    for change in changed_data_files(run_dir, sources):
        say(f"warning: data file changed: {change}. The resumed run trains on the new content.")
