"""Built-in metrics (offline) and the check on the watched metric."""

import numpy as np
import pytest

from finetune.errors import FinetuneError
from finetune.recipe.training import split_metric_name
from finetune.training.metrics import (
    check_reported_metric,
    check_watched_metric,
    classification_metrics,
    metrics_function,
    perfect_predictions,
    regression_metrics,
)


def test_binary_classification_metrics():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [1.0, 0.0]])  # predictions 0, 1, 1, 0
    labels = np.array([0, 1, 0, 0])
    metrics = classification_metrics(logits, labels, 2)
    assert metrics["accuracy"] == 0.75
    assert metrics["f1"] == pytest.approx(2 / 3)  # positive class: precision 1/2, recall 1
    assert metrics["f1_macro"] == pytest.approx((2 / 3 + 0.8) / 2)
    # TP 1, FP 1, TN 2, FN 0: (1*2 - 1*0) / sqrt(2 * 1 * 3 * 2)
    assert metrics["mcc"] == pytest.approx(1 / np.sqrt(3))


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
        metrics_function("classification", 2, ["accuracy"], trust_remote_code=True)


def test_metric_name_with_a_config():
    assert split_metric_name("glue:mrpc") == ("glue", "mrpc")
    assert split_metric_name("accuracy") == ("accuracy", None)
    assert split_metric_name("someone/metric") == ("someone/metric", None)  # a hub metric, not a config
    for bad in ("glue:", ":mrpc"):
        with pytest.raises(ValueError, match="give `name` or `name:config`"):
            split_metric_name(bad)


def test_extra_metric_config_reaches_evaluate_load(fake_evaluate):
    compute = metrics_function("classification", 2, ["glue:mrpc", "exact_match"], trust_remote_code=True)
    assert fake_evaluate.calls == [("glue", "mrpc"), ("exact_match", None)]
    from transformers import EvalPrediction

    out = compute(EvalPrediction(predictions=np.array([[2.0, 0.0], [0.0, 1.0]]), label_ids=np.array([0, 0])))
    assert out["exact_match"] == 0.5 and out["accuracy"] == 0.5


def test_a_hub_metric_runs_only_with_the_trust_remote_code_opt_in(fake_evaluate):
    from finetune.errors import RecipeError

    with pytest.raises(RecipeError) as refused:
        metrics_function("classification", 2, ["glue:mrpc"])
    assert str(refused.value).startswith(
        "evaluation.extra_metrics: 'glue:mrpc' is an `evaluate` metric whose code is downloaded from the "
        "Hugging Face hub and run in this process; set evaluation.trust_remote_code: true to allow that "
        "(only for metrics you trust), or remove it. The built-in metrics (accuracy, balanced_accuracy, f1, "
    )
    assert fake_evaluate.calls == []  # nothing was loaded, so nothing ran
    metrics_function("classification", 2, ["glue:mrpc"], trust_remote_code=True)
    assert fake_evaluate.calls == [("glue", "mrpc")]


def test_a_local_metric_script_needs_no_opt_in(tmp_path, fake_evaluate):
    script = tmp_path / "my_metric.py"
    script.write_text("# the user's own metric\n")
    with pytest.raises(FinetuneError, match=r"'exact_match' is an `evaluate` metric"):
        metrics_function("classification", 2, [str(script), "exact_match"])
    metrics_function("classification", 2, [str(script)])
    assert fake_evaluate.calls == [(str(script), None)]


def test_malformed_extra_metric_is_a_recipe_error():
    from finetune.errors import RecipeError
    from finetune.recipe import validate_recipe

    with pytest.raises(RecipeError, match="evaluation.extra_metrics.*'glue:' is not a metric name"):
        validate_recipe({"evaluation": {"extra_metrics": ["glue:"]}})


def test_watched_metric_from_extra_metrics_is_checked_by_computing_them(fake_evaluate):
    compute = metrics_function("classification", 3, ["exact_match"], trust_remote_code=True)
    check_reported_metric("exact_match", "classification", 3, compute, [0, 2, 1])
    with pytest.raises(FinetuneError) as error:
        check_reported_metric("exact_mach", "classification", 3, compute, [0, 2, 1])
    message = str(error.value)
    assert "early_stopping.metric: the evaluation does not report 'exact_mach'" in message
    assert "did you mean 'exact_match'" in message
    assert (
        "it reports accuracy, balanced_accuracy, exact_match, f1_macro, loss, mcc, recall_0, recall_1, recall_2"
        in message
    )


def test_perfect_predictions_score_perfectly_for_every_task():
    from finetune.training.metrics import task_metrics

    cases = {
        "classification": ([0, 2, 1], 3, "accuracy"),
        "multi_label": ([[1.0, 0.0], [0.0, 1.0]], 2, "subset_accuracy"),
        "regression": ([0.5, 1.5, 3.0], 1, "pearson"),
        "token_classification": ([[0, 1], [2], [0, 0, 1]], 3, "f1"),
    }
    names = ["O", "B-PER", "I-PER"]
    for task, (labels, num_labels, metric) in cases.items():
        logits, gold = perfect_predictions(task, labels, num_labels)
        assert task_metrics(task, logits, gold, num_labels, label_names=names)[metric] == pytest.approx(
            1.0
        ), task


def test_imbalanced_metrics_see_through_a_majority_answer():
    # 9 negatives, 1 positive; the model says negative to all but one negative
    labels = np.array([0] * 9 + [1])
    logits = np.eye(2)[[0] * 8 + [1, 0]]
    metrics = classification_metrics(logits, labels, 2, ["neg", "pos"])
    assert metrics["accuracy"] == pytest.approx(0.8)
    assert metrics["recall_neg"] == pytest.approx(8 / 9) and metrics["recall_pos"] == 0.0
    assert metrics["balanced_accuracy"] == pytest.approx((8 / 9 + 0) / 2)


def test_balanced_accuracy_averages_the_classes_the_gold_labels_hold():
    labels = np.array([0, 0, 1, 1])
    logits = np.eye(3)[[0, 1, 1, 2]]  # class 2 never gold: no recall to average
    metrics = classification_metrics(logits, labels, 3)
    assert metrics["balanced_accuracy"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert metrics["recall_2"] == 0.0


def test_per_class_recall_can_be_watched_when_the_label_exists():
    check_watched_metric("recall_pos", "classification", 2, [], ["neg", "pos"])
    check_watched_metric("balanced_accuracy", "classification", 3, [], ["a", "b", "c"])
    with pytest.raises(FinetuneError, match="does not report 'recall_positive'.*recall_pos"):
        check_watched_metric("recall_positive", "classification", 2, [], ["neg", "pos"])
