"""Built-in metrics (offline) and the check on the watched metric."""

import numpy as np
import pytest

from finetune.errors import FinetuneError
from finetune.metrics import (
    check_watched_metric,
    classification_metrics,
    metrics_function,
    regression_metrics,
)


def test_binary_classification_metrics():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [1.0, 0.0]])  # predictions 0, 1, 1, 0
    labels = np.array([0, 1, 0, 0])
    metrics = classification_metrics(logits, labels, 2)
    assert metrics["accuracy"] == 0.75
    assert metrics["f1"] == pytest.approx(2 / 3)  # positive class: precision 1/2, recall 1
    assert metrics["f1_macro"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert -1 <= metrics["mcc"] <= 1


def test_multiclass_has_no_binary_f1():
    logits = np.eye(3)[[0, 1, 2, 2]]
    metrics = classification_metrics(logits, np.array([0, 1, 2, 1]), 3)
    assert "f1" not in metrics and metrics["accuracy"] == 0.75


def test_regression_metrics():
    predictions = np.array([1.0, 2.0, 3.0, 4.0])
    metrics = regression_metrics(predictions, np.array([1.0, 2.0, 3.0, 5.0]))
    assert metrics["spearman"] == pytest.approx(1.0)
    assert 0.95 < metrics["pearson"] < 1.0
    assert metrics["mse"] == pytest.approx(0.25)
    assert regression_metrics(np.ones(4), np.arange(4.0))["pearson"] == 0.0  # constant: defined as 0


def test_compute_function_takes_eval_predictions():
    from transformers import EvalPrediction

    compute = metrics_function("regression", 1)
    out = compute(
        EvalPrediction(predictions=np.array([[0.0], [1.0], [2.0]]), label_ids=np.array([0.0, 1.0, 2.0]))
    )
    assert out["pearson"] == pytest.approx(1.0)


def test_watched_metric_must_exist_for_the_task():
    check_watched_metric("f1", "classification", 2, [])
    with pytest.raises(FinetuneError, match="use `f1_macro`"):
        check_watched_metric("f1", "classification", 3, [])
    with pytest.raises(FinetuneError, match="does not report 'accuracy'"):
        check_watched_metric("accuracy", "regression", 1, [])


def test_evaluate_metric_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FinetuneError, match="need internet"):
        metrics_function("classification", 2, ["glue"])
