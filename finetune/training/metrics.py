"""Metrics: a task -> a `compute_metrics` function for the Trainer, offline.

The built-in metrics use scikit-learn and scipy, so they work without internet; `evaluate`
metrics (which download their code from the hub) can be added by name for online users.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from finetune.errors import FinetuneError, RecipeError
from finetune.recipe.early_stopping import PER_CLASS_RECALL, TASK_METRICS
from finetune.recipe.training import split_metric_name

IGNORED_LABEL = -100  # sub-words after a word's first, and padding, in token classification


def classification_metrics(
    logits: np.ndarray, labels: np.ndarray, num_labels: int, label_names: list[str] | None = None
) -> dict[str, float]:
    """Accuracy, macro-F1, balanced accuracy and Matthews correlation; positive-class F1 for binary
    tasks; and the recall of every class (`recall_<label name>`).

    On imbalanced data accuracy flatters a model that ignores the rare classes (90% for always
    answering the majority of a 9:1 split); macro-F1, balanced accuracy (the mean recall over the
    classes the gold labels hold) and the per-class recalls do not.
    """
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef, recall_score

    predictions = logits.argmax(axis=-1)
    classes = list(range(num_labels))
    recalls = recall_score(labels, predictions, labels=classes, average=None, zero_division=0)
    present = np.isin(classes, labels)
    metrics = {
        "accuracy": float(accuracy_score(labels, predictions)),
        "f1_macro": float(f1_score(labels, predictions, average="macro", labels=classes, zero_division=0)),
        "balanced_accuracy": float(recalls[present].mean()) if present.any() else 0.0,
        "mcc": float(matthews_corrcoef(labels, predictions)),
    }
    if num_labels == 2:
        metrics["f1"] = float(f1_score(labels, predictions, pos_label=1, average="binary", zero_division=0))
    for name, recall in zip(recall_names(num_labels, label_names), recalls):
        metrics[name] = float(recall)
    return metrics


def recall_names(num_labels: int, label_names: list[str] | None) -> list[str]:
    """`recall_<label name>` per class (`recall_<id>` when the names are unknown)."""
    names = label_names if label_names is not None else [str(i) for i in range(num_labels)]
    return [f"{PER_CLASS_RECALL}{name}" for name in names]


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


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def multi_label_metrics(logits: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Micro/macro F1, micro precision/recall and subset accuracy of sigmoid(logits) > threshold.

    Micro averages pool every (text, label) decision, so frequent labels weigh more; macro averages
    the per-label F1, so rare labels count as much as common ones. Subset accuracy counts a text
    as right only when its whole label set is.
    """
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    predictions = (sigmoid(logits) > threshold).astype(int)
    gold = (labels > 0.5).astype(int)
    return {
        "f1_micro": float(f1_score(gold, predictions, average="micro", zero_division=0)),
        "f1_macro": float(f1_score(gold, predictions, average="macro", zero_division=0)),
        "precision_micro": float(precision_score(gold, predictions, average="micro", zero_division=0)),
        "recall_micro": float(recall_score(gold, predictions, average="micro", zero_division=0)),
        "subset_accuracy": float(accuracy_score(gold, predictions)),
    }


def tag_sequences(
    logits: np.ndarray, labels: np.ndarray, label_names: list[str]
) -> tuple[list[list[str]], list[list[str]]]:
    """Gold and predicted tag names per sentence, over labelled positions only (first sub-words)."""
    predictions = logits.argmax(axis=-1)
    gold_rows, predicted_rows = [], []
    for gold, predicted in zip(labels, predictions):
        keep = gold != IGNORED_LABEL
        gold_rows.append([label_names[i] for i in gold[keep]])
        predicted_rows.append([label_names[i] for i in predicted[keep]])
    return gold_rows, predicted_rows


def token_metrics(logits: np.ndarray, labels: np.ndarray, label_names: list[str]) -> dict[str, float]:
    """Entity-level precision, recall and F1 (seqeval, CoNLL-2000 rules) and token accuracy.

    An entity counts only when its type and exact span are both right (Tjong Kim Sang & De
    Meulder, 2003); accuracy is over labelled tokens, `O` included.
    """
    return entity_metrics(*tag_sequences(logits, labels, label_names))


def entity_metrics(gold: list[list[str]], predicted: list[list[str]]) -> dict[str, float]:
    """seqeval's entity-level precision, recall, F1 and tag accuracy of tag-name sequences."""
    from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score

    return {
        "f1": float(f1_score(gold, predicted, zero_division=0)),
        "precision": float(precision_score(gold, predicted, zero_division=0)),
        "recall": float(recall_score(gold, predicted, zero_division=0)),
        "accuracy": float(accuracy_score(gold, predicted)),
    }


def task_metrics(
    task: str,
    logits: np.ndarray,
    labels: np.ndarray,
    num_labels: int,
    threshold: float = 0.5,
    label_names: list[str] | None = None,
) -> dict[str, float]:
    """The built-in metrics of a task from raw model outputs and gold labels."""
    logits = np.asarray(logits, dtype=np.float64)
    if task == "regression":
        return regression_metrics(logits, np.asarray(labels, dtype=np.float64))
    if task == "multi_label":
        return multi_label_metrics(logits, np.asarray(labels, dtype=np.float64), threshold)
    if task == "token_classification":
        if label_names is None:
            raise ValueError("token_classification metrics need the tag names")
        return token_metrics(logits, np.asarray(labels), label_names)
    return classification_metrics(logits, np.asarray(labels), num_labels, label_names)


def decisions(task: str, logits: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """What the model predicts from its logits: class ids, 0/1 label vectors, tag ids, or values."""
    logits = np.asarray(logits)
    if task == "regression":
        return logits.reshape(-1)
    if task == "multi_label":
        return (sigmoid(logits.astype(np.float64)) > threshold).astype(int)
    return logits.argmax(axis=-1)


def available_metrics(task: str, num_labels: int, label_names: list[str] | None = None) -> list[str]:
    """Metric names (without the `eval_` prefix) this task reports."""
    names = list(TASK_METRICS[task])
    if task == "classification" and num_labels != 2:
        names.remove("f1")
    if task == "classification":
        names += recall_names(num_labels, label_names)
    return names


def check_watched_metric(
    metric: str, task: str, num_labels: int, extra: list[str], label_names: list[str] | None = None
) -> None:
    """Fail before training when the watched metric will never be reported (a `recall_<label>` whose
    label the data lacks included)."""
    names = available_metrics(task, num_labels, label_names)
    if metric in names or extra:
        return
    hint = " (`f1` is the positive-class F1 of binary tasks; use `f1_macro`)" if metric == "f1" else ""
    raise FinetuneError(
        f"early_stopping.metric: this {task} task with {num_labels} labels does not report '{metric}'{hint}; "
        f"choose one of {', '.join(names)}"
    )


def perfect_predictions(task: str, labels: list[Any], num_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """(logits, labels) of a model that predicts `labels` exactly, shaped like the Trainer's outputs.

    Token classification labels are word-level tag lists: padded with the ignored label.
    """
    if task == "token_classification":
        ids = np.full((len(labels), max(len(row) for row in labels)), IGNORED_LABEL)
        for i, row in enumerate(labels):
            ids[i, : len(row)] = row
        return np.eye(num_labels)[np.where(ids == IGNORED_LABEL, 0, ids)], ids
    gold = np.asarray(labels)
    if task == "classification":
        return np.eye(num_labels)[gold], gold
    if task == "multi_label":
        return np.where(gold > 0.5, 4.0, -4.0), gold
    return gold.reshape(-1, 1).astype(np.float64), gold


def check_reported_metric(
    metric: str, task: str, num_labels: int, compute: Callable, labels: list[Any]
) -> None:
    """With `evaluation.extra_metrics`, run the metrics once on `labels` (validation labels, predicted
    perfectly) before training: the watched metric may be one of theirs, and only computing them says
    which names they report. A misspelt `early_stopping.metric` would otherwise fail at the first
    evaluation during training; a metric that cannot compute at all fails here too."""
    from transformers import EvalPrediction

    logits, gold = perfect_predictions(task, labels, num_labels)
    try:
        reported = set(compute(EvalPrediction(predictions=logits, label_ids=gold))) | {"loss"}
    except Exception as error:
        raise FinetuneError(
            f"evaluation.extra_metrics: computing the metrics on validation labels failed "
            f"({type(error).__name__}: {error}); remove the metric that does not fit this {task} task"
        ) from None
    if metric not in reported:
        near = difflib.get_close_matches(metric, sorted(reported), n=1)
        raise FinetuneError(
            f"early_stopping.metric: the evaluation does not report '{metric}'"
            + (f" (did you mean '{near[0]}'?)" if near else "")
            + f"; it reports {', '.join(sorted(reported))}"
        )


BUILTIN_METRICS = sorted({m for ms in TASK_METRICS.values() for m in ms})  # computed here, offline


def hub_metric_names(names: list[str]) -> list[str]:
    """The extra metrics whose code `evaluate.load` downloads from the hub and runs: every name that is
    not a local metric script or folder."""
    return [name for name in names if not Path(split_metric_name(name)[0]).exists()]


def check_metric_code(names: list[str], trust_remote_code: bool) -> None:
    """Refuse `evaluate` metrics from the hub (code that would run here) unless the recipe opts in
    with `evaluation.trust_remote_code`, as `model.trust_remote_code` does for model code."""
    untrusted = [] if trust_remote_code else hub_metric_names(names)
    if not untrusted:
        return
    one = len(untrusted) == 1
    raise RecipeError(
        f"evaluation.extra_metrics: {', '.join(repr(n) for n in untrusted)} "
        + ("is an `evaluate` metric" if one else "are `evaluate` metrics")
        + " whose code is downloaded from the Hugging Face hub and run in this process; set "
        f"evaluation.trust_remote_code: true to allow that (only for metrics you trust), or remove "
        f"{'it' if one else 'them'}. The built-in metrics ({', '.join(BUILTIN_METRICS)}) need no opt-in."
    )


def load_extra_metrics(names: list[str], trust_remote_code: bool = False) -> list[Any]:
    """`evaluate` metrics by name (hub ones only with `trust_remote_code`); offline, a clear error
    instead of a connection traceback."""
    if not names:
        return []
    check_metric_code(names, trust_remote_code)
    import evaluate

    loaded = []
    for name in names:
        path, config = split_metric_name(name)
        try:
            loaded.append(evaluate.load(path, config))
        except Exception as error:
            raise FinetuneError(
                f"evaluation.extra_metrics: could not load '{name}' with `evaluate` ({type(error).__name__}: "
                f"{error}). `evaluate` metrics download their code from the hub and need internet; "
                f"the built-in metrics ({', '.join(BUILTIN_METRICS)}) work offline."
            ) from None
    return loaded


def metrics_function(
    task: str,
    num_labels: int,
    extra_metrics: list[str] | None = None,
    threshold: float = 0.5,
    label_names: list[str] | None = None,
    trust_remote_code: bool = False,
) -> Callable:
    """The `compute_metrics` callable for `transformers.Trainer`.

    `threshold` is the multi-label decision threshold; `label_names` (the tags) are needed for
    token classification's entity-level metrics; `trust_remote_code` (`evaluation.trust_remote_code`)
    lets `extra_metrics` load their code from the hub.
    """
    extras = load_extra_metrics(extra_metrics or [], trust_remote_code)

    def compute(prediction: Any) -> dict[str, float]:
        logits, labels = prediction.predictions, prediction.label_ids
        if isinstance(logits, tuple):
            logits = logits[0]
        compute.last_outputs = (
            logits  # the latest evaluation's outputs (training/learning_check.py reads them)
        )
        compute.last_labels = labels  # in the same order (calibration/calibrate.py pairs them)
        metrics = task_metrics(task, logits, labels, num_labels, threshold, label_names)
        predictions = decisions(task, logits, threshold)
        for metric in extras:
            for key, value in metric.compute(predictions=predictions, references=labels).items():
                if isinstance(value, (int, float)):
                    metrics[key] = float(value)
        return metrics

    compute.last_outputs = compute.last_labels = None
    return compute


def per_document(compute: Callable, documents: np.ndarray, how: str, order: np.ndarray | None) -> Callable:
    """`compute` over documents for an evaluation of windows (data/windows.py): the windows' outputs,
    put back in data order (`order`: the length-sorted loader's position -> window), aggregated per
    document (`data.long_documents.aggregate`; labels: the first window's, all windows share them)."""
    from transformers import EvalPrediction

    from finetune.data.samplers import restore_order
    from finetune.data.windows import aggregate

    def compute_documents(prediction: Any) -> dict[str, float]:
        logits, labels = prediction.predictions, prediction.label_ids
        logits = logits[0] if isinstance(logits, tuple) else logits
        if len(logits) != len(documents):
            raise FinetuneError(
                f"data.long_documents: the evaluation returned {len(logits)} outputs for {len(documents)} "
                "windows; evaluate without data.long_documents or on one process"
            )
        if order is not None:
            logits, labels = restore_order(logits, order), restore_order(labels, order)
        gold = aggregate(labels, documents, "first")
        return compute(EvalPrediction(predictions=aggregate(logits, documents, how), label_ids=gold))

    return compute_documents
