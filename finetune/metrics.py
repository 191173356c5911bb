"""Metrics: a task -> a `compute_metrics` function for the Trainer, offline.

The built-in metrics use scikit-learn and scipy, so they work without internet; `evaluate`
metrics (which download their code from the hub) can be added by name for online users.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import FinetuneError
from .recipe.early_stopping import TASK_METRICS


def classification_metrics(logits: np.ndarray, labels: np.ndarray, num_labels: int) -> dict[str, float]:
    """Accuracy, macro-F1 and Matthews correlation; plus positive-class F1 for binary tasks."""
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    predictions = logits.argmax(axis=-1)
    metrics = {
        "accuracy": float(accuracy_score(labels, predictions)),
        "f1_macro": float(
            f1_score(labels, predictions, average="macro", labels=list(range(num_labels)), zero_division=0)
        ),
        "mcc": float(matthews_corrcoef(labels, predictions)),
    }
    if num_labels == 2:
        metrics["f1"] = float(f1_score(labels, predictions, pos_label=1, average="binary", zero_division=0))
    return metrics


def regression_metrics(predictions: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Pearson and Spearman correlation and mean squared error."""
    from scipy.stats import pearsonr, spearmanr

    predictions = predictions.reshape(-1)
    constant = np.ptp(predictions) == 0 or np.ptp(targets) == 0  # correlation undefined: report 0
    return {
        "pearson": 0.0 if constant else float(pearsonr(predictions, targets)[0]),
        "spearman": 0.0 if constant else float(spearmanr(predictions, targets)[0]),
        "mse": float(np.mean((predictions - targets) ** 2)),
    }


def available_metrics(task: str, num_labels: int) -> list[str]:
    """Metric names (without the `eval_` prefix) this task reports."""
    names = list(TASK_METRICS[task])
    if task == "classification" and num_labels != 2:
        names.remove("f1")
    return names


def check_watched_metric(metric: str, task: str, num_labels: int, extra: list[str]) -> None:
    """Fail before training when the watched metric will never be reported."""
    names = available_metrics(task, num_labels)
    if metric in names or extra:
        return
    hint = " (`f1` is the positive-class F1 of binary tasks; use `f1_macro`)" if metric == "f1" else ""
    raise FinetuneError(
        f"early_stopping.metric: this {task} task with {num_labels} labels does not report '{metric}'{hint}; "
        f"choose one of {', '.join(names)}"
    )


def load_extra_metrics(names: list[str]) -> list[Any]:
    """`evaluate` metrics by name; offline, a clear error instead of a connection traceback."""
    if not names:
        return []
    import evaluate

    loaded = []
    for name in names:
        try:
            loaded.append(evaluate.load(name))
        except Exception as error:
            raise FinetuneError(
                f"evaluation.extra_metrics: could not load '{name}' with `evaluate` ({type(error).__name__}: "
                f"{error}). `evaluate` metrics download their code from the hub and need internet; "
                f"the built-in metrics ({', '.join(sorted(set(TASK_METRICS['classification'] + TASK_METRICS['regression'])))}) work offline."
            ) from None
    return loaded


def metrics_function(task: str, num_labels: int, extra_metrics: list[str] | None = None) -> Callable:
    """The `compute_metrics` callable for `transformers.Trainer`."""
    extras = load_extra_metrics(extra_metrics or [])

    def compute(prediction: Any) -> dict[str, float]:
        logits, labels = prediction.predictions, prediction.label_ids
        if isinstance(logits, tuple):
            logits = logits[0]
        if task == "regression":
            metrics = regression_metrics(
                np.asarray(logits, dtype=np.float64), np.asarray(labels, dtype=np.float64)
            )
            predictions = np.asarray(logits).reshape(-1)
        else:
            metrics = classification_metrics(
                np.asarray(logits, dtype=np.float64), np.asarray(labels), num_labels
            )
            predictions = np.asarray(logits).argmax(axis=-1)
        for metric in extras:
            for key, value in metric.compute(predictions=predictions, references=labels).items():
                if isinstance(value, (int, float)):
                    metrics[key] = float(value)
        return metrics

    return compute
