"""Did the run learn anything? The constant-prediction baseline, and the verdict at the end.

A model that ends where a constant answer would (the majority class, or the mean target) is the
worst thing a fine-tuning run can hand back, and the metric alone does not show it: MRPC's
majority class already scores F1 0.81. So the run scores the constant answer of its training
labels on the validation set before it trains, prints it beside the metric, and at the end says
plainly when the restored weights are not clearly better than that answer or than the model before
training, or predict one class for every example (`results.json` field `learning_check`, the top
of `report.md`, a warning on the console).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# "Clearly better": by more than this on metrics in [0, 1] (accuracy, F1, MCC, correlations), or
# by this fraction for losses and errors (lower is better). One validation example in a hundred.
MARGIN = 0.01
ADVICE = (
    "Likely causes: a learning rate too small (or too large) for this model and number of steps, too "
    "few steps, or labels that do not follow from the text. Try: `finetune lr-find RECIPE`, a larger "
    "or smaller optimizer.lr, more training.epochs, and check data.label and the label counts."
)


@dataclass
class Baseline:
    """The metrics of always giving one answer, learned from the training labels."""

    answer: str  # "always 'positive' (the most common training label)"
    metrics: dict[str, float] = field(default_factory=dict)


def constant_outputs(
    task: str, train_labels: list[Any], count: int, num_labels: int
) -> tuple[np.ndarray, str]:
    """Model outputs (logits, or values) that give the constant answer for `count` examples."""
    if task == "regression":
        mean = float(np.mean(np.asarray(train_labels, dtype=np.float64)))
        return np.full((count, 1), mean), f"always {mean:.4g} (the mean training target)"
    if task == "multi_label":
        share = np.mean(np.asarray(train_labels, dtype=np.float64) > 0.5, axis=0)
        logits = np.where(share > 0.5, 4.0, -4.0)
        return np.tile(logits, (count, 1)), "always each label's more common decision in training"
    if task == "token_classification":
        return np.zeros((count, 1, num_labels)), ""  # not scored: see constant_baseline
    top = majority(train_labels)
    return np.tile(np.eye(num_labels)[top], (count, 1)), f"always label {top} (the most common in training)"


def majority(labels: list[Any]) -> Any:
    """The most common label; of equally common ones, the first in label order."""
    counts = Counter(labels)
    return min(counts, key=lambda label: (-counts[label], label))


def constant_baseline(
    task: str,
    train_labels: list[Any],
    validation_labels: list[Any],
    num_labels: int,
    compute: Any,
    names: Any = None,
) -> Baseline | None:
    """Score the constant answer on the validation labels with the run's own metric function."""
    from transformers import EvalPrediction

    if task == "token_classification" or not validation_labels:
        return None  # entity F1 of the majority tag (O) is 0: nothing to compare against
    outputs, answer = constant_outputs(task, train_labels, len(validation_labels), num_labels)
    if task == "classification" and names:
        answer = f"always '{names[majority(train_labels)]}' (the most common training label)"
    gold = np.asarray(validation_labels)
    metrics = compute(EvalPrediction(predictions=outputs, label_ids=gold))
    return Baseline(answer=answer, metrics={k: float(v) for k, v in metrics.items()})


def clearly_better(value: float, reference: float, greater_is_better: bool) -> bool:
    if greater_is_better:
        return value > reference + MARGIN
    return value < reference - MARGIN * abs(reference)


def learning_verdict(
    metric: str,
    greater_is_better: bool,
    final: dict[str, float],
    initial: dict[str, float],
    baseline: Baseline | None,
    spread: dict[str, Any] | None,
) -> dict[str, Any]:
    """`{"learned": bool, "problems": [...], ...}` for `results.json`; `final`/`initial` without `eval_`."""
    value = final.get(metric)
    problems = []
    base = baseline.metrics.get(metric) if baseline else None
    if value is None or not np.isfinite(value):
        problems.append(f"the final {metric} is {value}: the weights are not usable")
    else:
        if base is not None and not clearly_better(value, base, greater_is_better):
            problems.append(
                f"{metric} {value:.4f} is not clearly better than a constant answer ({baseline.answer}: {base:.4f})"
            )
        start = initial.get(metric)
        if start is not None and not clearly_better(value, start, greater_is_better):
            problems.append(f"{metric} {value:.4f} is not clearly better than before training ({start:.4f})")
    if spread and spread.get("distinct") == 1:
        problems.append(f"the model predicts {spread['answer']} for every validation example")
    return {
        "learned": not problems,
        "verdict": "learned" if not problems else "learned nothing",
        "problems": problems,
        "metric": metric,
        "margin": MARGIN,
        "baseline": {"answer": baseline.answer, "metrics": baseline.metrics} if baseline else None,
        "advice": ADVICE if problems else None,
    }


def prediction_spread(task: str, outputs: np.ndarray, names: list[str] | None) -> dict[str, Any] | None:
    """How varied the final predictions are: distinct classes (classification) or values (regression)."""
    if outputs is None or len(outputs) == 0:
        return None
    outputs = np.asarray(outputs)
    if task == "classification":
        predicted = outputs.argmax(axis=-1)
        counts = Counter(predicted.tolist())
        top = counts.most_common(1)[0][0]
        answer = f"'{names[top]}'" if names else f"label {top}"
        return {"distinct": len(counts), "answer": answer, "top_share": counts[top] / len(predicted)}
    if task == "regression":
        values = outputs.reshape(-1)
        constant = bool(np.ptp(values) <= 1e-6 * max(1.0, float(np.abs(values).max())))
        return {"distinct": 1 if constant else 2, "answer": f"{values[0]:.4g}"}
    return None


def warning_text(check: dict[str, Any]) -> str:
    """The console warning (several lines) of a run that learned nothing."""
    lines = ["warning: this run learned nothing useful:", *(f"  - {p}" for p in check["problems"])]
    return "\n".join([*lines, f"  {check['advice']}"])
