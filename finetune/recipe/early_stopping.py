"""`early_stopping:` stop when the validation metric stops improving, keep the best weights."""

from typing import Literal

from pydantic import Field

from .base import Section

# The validation metrics each task reports without internet (see finetune/training/metrics.py).
# `f1` is the positive-class F1 of binary tasks (GLUE's convention); `f1_macro` works for any.
TASK_METRICS: dict[str, tuple[str, ...]] = {
    # balanced_accuracy = mean per-class recall; every class also reports recall_<label name>
    "classification": ("accuracy", "f1", "f1_macro", "balanced_accuracy", "mcc", "loss"),
    "regression": ("pearson", "spearman", "mse", "loss"),
    # micro/macro F1 over labels at model.threshold; subset accuracy = every label of a text right
    "multi_label": ("f1_micro", "f1_macro", "precision_micro", "recall_micro", "subset_accuracy", "loss"),
    # entity-level precision/recall/F1 (seqeval, CoNLL rules); accuracy over labelled tokens
    "token_classification": ("f1", "precision", "recall", "accuracy", "loss"),
}
DEFAULT_METRIC = {
    "classification": "accuracy",
    "regression": "pearson",
    "multi_label": "f1_micro",
    "token_classification": "f1",
}
LOWER_IS_BETTER = ("loss", "mse")
PER_CLASS_RECALL = "recall_"  # classification: recall_<label name>, one per class


def is_task_metric(metric: str, task: str) -> bool:
    """Whether a task reports `metric` (a per-class recall's label is checked once the data is known)."""
    per_class = (
        task == "classification" and metric.startswith(PER_CLASS_RECALL) and metric != PER_CLASS_RECALL
    )
    return metric in TASK_METRICS[task] or per_class


class EarlyStoppingSection(Section):
    enabled: bool = True
    """Stop early and restore the best weights. When false, the run trains to the end and still
    restores the best evaluated weights."""

    metric: str = "auto"
    """Validation metric to watch: `auto` (accuracy for classification, pearson for regression,
    f1_micro for multi_label, entity-level f1 for token_classification), `loss`, or any metric the
    task reports (classification: accuracy, f1, f1_macro, balanced_accuracy, mcc, and
    recall_<label name> per class; regression: pearson, spearman, mse;
    multi_label: f1_micro, f1_macro, precision_micro, recall_micro, subset_accuracy;
    token_classification: f1, precision, recall, accuracy)."""

    mode: Literal["auto", "max", "min"] = "auto"
    """Whether larger is better (`max`) or smaller (`min`); `auto` is min for loss/mse, max otherwise."""

    patience: int = Field(3, ge=1)
    """Stop after this many evaluations in a row without improvement (evaluations, not epochs)."""

    min_delta: float = Field(0.0, ge=0)
    """Smallest change that counts as an improvement (absolute, or a fraction when `relative`)."""

    relative: bool = False
    """Read `min_delta` as a fraction of the best value so far (0.01 = 1% better)."""

    def watched_metric(self, task: str) -> str:
        """The metric name this section watches for a task (resolving `auto`)."""
        return DEFAULT_METRIC[task] if self.metric == "auto" else self.metric

    def greater_is_better(self, task: str) -> bool:
        if self.mode != "auto":
            return self.mode == "max"
        return self.watched_metric(task) not in LOWER_IS_BETTER
