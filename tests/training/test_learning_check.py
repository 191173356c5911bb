"""The constant-answer baseline and the "learned nothing" verdict, alone and in a real (tiny) run."""

import json

import numpy as np
import pytest

from finetune.training.learning_check import Baseline, constant_baseline, learning_verdict, prediction_spread
from finetune.training.metrics import metrics_function


def test_the_baseline_answers_the_most_common_training_label():
    compute = metrics_function("classification", 2)
    baseline = constant_baseline("classification", [0, 0, 1], [0, 1, 1, 1], 2, compute, ["neg", "pos"])
    assert baseline.answer == "always 'neg' (the most common training label)"
    assert baseline.metrics["accuracy"] == 0.25 and baseline.metrics["f1"] == 0.0


def test_the_regression_baseline_answers_the_mean_target():
    compute = metrics_function("regression", 1)
    baseline = constant_baseline("regression", [1.0, 3.0], [0.0, 4.0], 1, compute)
    assert baseline.answer.startswith("always 2 ")
    assert baseline.metrics["pearson"] == 0.0 and baseline.metrics["mse"] == pytest.approx(4.0)


def test_the_multi_label_baseline_gives_each_labels_common_decision():
    compute = metrics_function("multi_label", 2)
    train = [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
    baseline = constant_baseline("multi_label", train, [[1.0, 0.0], [0.0, 1.0]], 2, compute)
    assert baseline.metrics["subset_accuracy"] == 0.5


def verdict(final, initial=None, baseline=0.68, spread=None, metric="f1", greater=True):
    base = Baseline("always 'pos'", {metric: baseline})
    return learning_verdict(metric, greater, {metric: final}, initial or {}, base, spread)


def test_a_model_no_better_than_the_constant_answer_learned_nothing():
    check = verdict(0.685)  # within the 0.01 margin
    assert not check["learned"] and check["verdict"] == "learned nothing"
    assert "not clearly better than a constant answer (always 'pos': 0.6800)" in check["problems"][0]
    assert "lr-find" in check["advice"]


def test_a_model_that_beats_both_references_learned():
    check = verdict(0.80, initial={"f1": 0.50}, spread={"distinct": 2})
    assert check["learned"] and check["problems"] == [] and check["advice"] is None


def test_no_better_than_before_training_and_one_class_are_each_named():
    check = verdict(0.80, initial={"f1": 0.795}, spread={"distinct": 1, "answer": "'pos'"})
    assert [p.split(" ")[0] for p in check["problems"]] == ["f1", "the"]
    assert "predicts 'pos' for every validation example" in check["problems"][1]


def test_lower_is_better_metrics_need_a_relative_improvement():
    assert verdict(0.995, baseline=1.0, metric="mse", greater=False)["learned"] is False
    assert verdict(0.9, baseline=1.0, metric="mse", greater=False)["learned"] is True


def test_a_non_finite_final_metric_is_not_learning():
    assert not verdict(float("nan"))["learned"]


def test_prediction_spread_counts_classes_and_constant_values():
    logits = np.array([[0.1, 0.9], [0.2, 0.8], [0.3, 0.7]])
    assert prediction_spread("classification", logits, ["neg", "pos"])["distinct"] == 1
    assert prediction_spread("classification", np.array([[0.9, 0.1], [0.2, 0.8]]), None)["distinct"] == 2
    assert prediction_spread("regression", np.full((4, 1), 2.5), None)["distinct"] == 1
    assert prediction_spread("regression", np.array([[1.0], [2.0]]), None)["distinct"] == 2


@pytest.mark.integration
def test_a_run_that_cannot_learn_warns_everywhere(tiny_recipe, capsys, one_thread):
    from finetune.recipe import validate_recipe
    from finetune.training.run import train

    tiny_recipe["optimizer"] = {"lr": 1e-9}  # far too small for 12 steps
    run = train(validate_recipe(tiny_recipe))
    out = capsys.readouterr().out
    assert "constant answer, always 'neg' (the most common training label): " in out
    assert "warning: this run learned nothing useful:" in out
    check = json.loads((run.run_dir / "results.json").read_text())["learning_check"]
    assert check["learned"] is False and check["baseline"]["metrics"]["accuracy"] == 0.5
    report = (run.run_dir / "report.md").read_text()
    assert report.split("\n")[4] == "> **Warning: this run learned nothing useful.**"
    assert "| constant answer |" in report


@pytest.mark.integration
def test_a_run_that_learns_stays_silent(tiny_recipe, capsys, one_thread):
    from finetune.recipe import validate_recipe
    from finetune.training.run import train

    tiny_recipe["training"]["epochs"] = 8  # the small sentiment set is learnable word by word
    run = train(validate_recipe(tiny_recipe))
    assert run.results["learning_check"]["learned"], run.results["learning_check"]
    assert "learned nothing" not in capsys.readouterr().out
    assert "Warning" not in (run.run_dir / "report.md").read_text()
