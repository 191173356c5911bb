"""How a run ends: the verdict on its weights, `results.json`, the saved model, plots and report, for
every ending (completed, early-stopped, diverged, interrupted)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from finetune.data.splits import TaskData
from finetune.distributed.processes import is_main_process
from finetune.layers.freezing import FreezeSummary
from finetune.recipe import Recipe
from finetune.runs.folders import MODEL_DIR, environment, peak_rss_mb, read_metrics, write_results
from finetune.runs.plots import plot_calibration, plot_run
from finetune.runs.report import write_run_documents
from finetune.training.callbacks import EarlyStopping
from finetune.training.guards import FaultGuard, RunInterrupted, TrainingDiverged, resume_command
from finetune.training.learning_check import learning_verdict, prediction_spread

if TYPE_CHECKING:  # for annotations only: run.py imports this module
    from finetune.training.run import Prepared


def write_documents(run_dir: Path, run: Prepared) -> None:
    """The plots (`output.plots`), report.md and the model card, from the files the run wrote: every
    ending (completed, early-stopped, diverged, interrupted) leaves them."""
    if run.recipe.output.plots:
        plot_run(run_dir, read_metrics(run_dir), watched=run.metric, best_step=run.early.best_step)
        plot_calibration(run_dir)  # the reliability diagram, when the run calibrated
    write_run_documents(run_dir)  # report.md, and the model card in model/README.md


def check_learning(run: Prepared, final: dict[str, float], initial: dict[str, float]) -> dict[str, Any]:
    """The verdict on the weights the run ends with (training/learning_check.py), for results.json."""
    compute, data = run.trainer.compute_metrics, run.data
    spread = prediction_spread(run.recipe.model.task, compute.last_outputs, data.label_names)
    greater = run.early.greater_is_better
    return learning_verdict(run.metric, greater, _strip(final), _strip(initial), run.baseline, spread)


def stop_run(
    recipe: Recipe,
    run: Prepared,
    run_dir: Path,
    guard: FaultGuard,
    initial: dict[str, float],
    output: Any,
    train_seconds: float,
) -> NoReturn:
    """Finish a run a fault stopped: write what is known, keep the best weights, raise the fault's error."""
    trainer, early = run.trainer, run.early
    results = collect_results(
        recipe, run.data, run.frozen, trainer, early, initial, {}, output, train_seconds
    )
    results.update(stop_reason=guard.stop_reason, resumes=trainer.run_state.get("resumes", []))
    command = resume_command(run_dir, cpu=trainer.args.use_cpu)
    if guard.stopped_by == "signal":
        results.update(status="interrupted", resume_command=command)
        if is_main_process():
            write_results(run_dir, results)
            write_documents(run_dir, run)
        raise RunInterrupted(
            f"{guard.stop_reason}; checkpoint saved in {run_dir / 'checkpoints'}. Continue with: {command}",
            guard.signal_received,
        )
    kept = ""
    if early.restored and recipe.output.save_model:  # the best weights are finite: keep them
        save_model(trainer, run_dir / MODEL_DIR)
        kept = f" The best weights (step {early.best_step}, {early.metric} {early.best:.4g}) are in {run_dir / MODEL_DIR}."
    results.update(status="diverged")
    if is_main_process():
        write_results(run_dir, results)
        write_documents(run_dir, run)
    raise TrainingDiverged(
        f"{guard.stop_reason}; training stopped.{kept} Try a lower optimizer.lr, a longer warmup or "
        f"regularization.clip_grad_norm; see guards: in docs/checkpoints-and-failures.md."
    )


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
    evaluating = trainer.evaluation_seconds
    training = max(train_seconds - evaluating, 1e-9)  # optimizer steps only: no evaluation inside
    trainer_rate, trainer_seconds = (
        output.metrics.get(k) for k in ("train_samples_per_second", "train_runtime")
    )
    samples = trainer_rate * trainer_seconds if trainer_rate and trainer_seconds else None
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
        "train_seconds": round(train_seconds, 3),
        "evaluation_seconds_in_training": round(evaluating, 3),
        # throughput of training alone (the benchmarks' definition); the Trainer's own figure divides
        # by a time that includes the evaluations made during training
        "train_samples_per_second": round(samples / training, 2) if samples else None,
        "train_tokens_per_second": round(tokens_seen / training, 1) if train_seconds else None,
        "trainer_samples_per_second": trainer_rate,
        "train_loss": output.metrics.get("train_loss"),
        "time_split": time_split(trainer, train_seconds),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "environment": environment(),
    }
    if getattr(trainer, "teacher", None) is not None:  # `distill:`: which teacher, how it was used
        results["distill"] = trainer.teacher.summary
    if torch.cuda.is_available():
        results["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return results


def time_split(trainer: Any, train_seconds: float) -> dict[str, float | None]:
    """Where the command's time went until results.json (the end-to-end benchmark's split), from the
    process's start: `startup` (imports, data, tokenization, model: up to the training loop, without
    the evaluation before training), `training` (optimizer steps, no evaluation), `evaluation` (all:
    before, during and after training), `other` (saving the model, calibration, ...; the report and
    plots written after results.json are not in it); and `to_first_step`, the command's start to
    the end of its first optimizer step (an evaluation before training included)."""
    from finetune.training.callbacks import process_started_at

    now, started = time.time(), process_started_at()
    began = getattr(trainer, "train_began_at", None)
    first = trainer.clock.first_step_at
    startup = began - started - trainer.evaluation_seconds_before if began is not None else None
    split = {
        "startup_seconds": startup,
        "training_seconds": train_seconds - trainer.evaluation_seconds,
        "evaluation_seconds": trainer.all_evaluation_seconds,
        "command_seconds_so_far": now - started,
        "to_first_step_seconds": first - started if first is not None else None,
    }
    accounted = (startup or 0.0) + split["training_seconds"] + split["evaluation_seconds"]
    split["other_seconds"] = split["command_seconds_so_far"] - accounted
    return {k: round(v, 2) if v is not None else None for k, v in split.items()}


def _strip(metrics: dict[str, float]) -> dict[str, float]:
    """Validation metrics without the `eval_` prefix and the Trainer's timing/bookkeeping entries."""
    noise = ("runtime", "per_second", "preparation_time", "tokens_seen", "epoch")
    return {k.removeprefix("eval_"): v for k, v in metrics.items() if not k.endswith(noise)}
