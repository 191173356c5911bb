"""A run's calibration step: fit T on the restored weights' validation logits, fold it, record it.

It reuses the logits of the final evaluation (the Trainer's gathered, data-ordered predictions that
`compute_metrics` keeps, training/metrics.py) instead of another pass over the validation split.
T is fitted on the main process and shared, so every replica folds the same number before the
model is saved (saving may be collective). Only the validation split is used: never a test file.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from finetune.calibration.folding import fold_temperature
from finetune.calibration.temperature import calibration_summary, fit_temperature
from finetune.distributed.processes import process_count, replicas_are_whole, say, share_from_main
from finetune.recipe import Recipe

CONFIG_KEY = "finetune_calibration"  # in the saved config.json: what was folded into the head
ALL_RIGHT = (
    "skipped: every validation example is answered right, so the validation NLL has no minimum (it "
    "falls as T -> 0, towards certainty); the saved probabilities are the model's own"
)
RECORDED = ("temperature", "bins", "examples", "ece_before", "ece_after", "nll_before", "nll_after")


def validation_outputs(trainer: Any, expected: int) -> tuple[np.ndarray, np.ndarray]:
    """The final evaluation's logits and labels, paired as the evaluation saw them (its order is
    longest-first, not the data's); evaluated again only if missing (every process agrees: the
    Trainer gathers predictions on all of them)."""
    compute = trainer.compute_metrics
    if compute.last_outputs is None or len(compute.last_outputs) != expected:
        trainer.evaluate()
    return np.asarray(compute.last_outputs, dtype=np.float64), np.asarray(compute.last_labels, dtype=int)


def skip_reason(recipe: Recipe, kept_start: bool = False) -> str | None:
    """Why this run does not calibrate (None: it does). Explicit `true` where impossible is refused by
    the recipe (recipe/schema.py); `auto` skips quietly for other tasks and says why for sharding.
    A run whose best weights are those it started from hands them back untouched (docs/defaults.md)."""
    if not recipe.calibration.wanted(recipe.model.task):
        return "off"
    if kept_start:
        return "skipped: the run hands back the weights it started from (it never beat them), unchanged"
    if process_count() > 1 and not replicas_are_whole(recipe.distributed):
        return f"skipped: {recipe.distributed.strategy} shards the head, which cannot be rescaled in place"
    return None


def describe(summary: dict[str, Any]) -> str:
    """One console line: T and what it did to the validation split's ECE and NLL."""
    return (
        f"calibration: temperature {summary['temperature']:.3f} fitted on {summary['examples']:,} "
        f"validation examples; ECE {summary['ece_before']:.4f} -> {summary['ece_after']:.4f}, "
        f"NLL {summary['nll_before']:.4f} -> {summary['nll_after']:.4f} (on the split T was fitted on)"
    )


def calibrate_run(
    recipe: Recipe, model: Any, trainer: Any, examples: int, num_labels: int, best_step: int | None = None
) -> dict | None:
    """Fit, fold and record temperature scaling for a finished run; its summary for results.json.

    Every process calls it (the fit is shared from the main one); None when calibration is off.
    `best_step` 0: the restored weights are those before training (SWA's average never is).
    """
    kept_start = best_step == 0 and getattr(trainer, "swa", None) is None
    reason = skip_reason(recipe, kept_start)
    if reason is not None:
        if reason != "off":
            say(f"calibration: {reason}")
        return None if reason == "off" else {"skipped": reason}
    logits, targets = validation_outputs(trainer, examples)
    bins = recipe.calibration.bins

    def fit() -> dict[str, Any]:
        if (logits.argmax(-1) == targets).all():
            return {"skipped": ALL_RIGHT}
        started = time.perf_counter()
        temperature = fit_temperature(logits, targets)
        seconds = round(time.perf_counter() - started, 4)
        return {**calibration_summary(logits, targets, temperature, bins), "fit_seconds": seconds}

    summary = share_from_main(fit, trainer.args.use_cpu)
    if "skipped" in summary:
        say(f"calibration: {summary['skipped']}")
        return summary
    summary["folded_into"] = fold_temperature(model, summary["temperature"], num_labels)
    model.config.update({CONFIG_KEY: {key: summary[key] for key in RECORDED}})
    say(describe(summary))
    return summary
