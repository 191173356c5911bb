"""A run with temperature scaling, end to end: T fitted on the validation split, folded into the
saved model (config.json records it, `pipeline` gives the calibrated probabilities), reported; and
the recipe key refused where it cannot apply."""

import json

import numpy as np
import pytest
import torch

from finetune.calibration.calibrate import CONFIG_KEY, calibrate_run, skip_reason
from finetune.calibration.temperature import negative_log_likelihood, softmax
from finetune.errors import RecipeError
from finetune.recipe import validate_recipe
from finetune.training.run import train


def saved_logits(model_dir, texts):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():
        return model(**tokenizer(texts, padding=True, return_tensors="pt")).logits.double().numpy()


def test_a_calibrated_run_saves_a_model_whose_logits_are_divided_by_t(tiny_recipe, tmp_path, one_thread):
    from conftest import sentiment_rows, write_rows
    from transformers import pipeline

    rows = sentiment_rows(1)  # the validation file, in order; two labels wrong, so T has a minimum
    for i in (0, 7):
        rows[i]["label"] = {"pos": "neg", "neg": "pos"}[rows[i]["label"]]
    tiny_recipe["data"]["validation"] = str(write_rows(tmp_path / "noisy-dev.csv", rows))
    tiny_recipe["model"]["name"] = "minilm-l6"  # the tiny random model learns nothing in 2 epochs
    tiny_recipe["optimizer"]["lr"] = 1e-4
    tiny_recipe["training"]["precision"] = (
        "fp32"  # the reloaded model computes in fp32: compare like with like
    )
    tiny_recipe["calibration"] = {"temperature": True, "bins": 10}
    result = train(validate_recipe(tiny_recipe))
    run_dir, calibration = result.run_dir, result.results["calibration"]
    temperature = calibration["temperature"]
    assert (
        temperature != pytest.approx(1.0, abs=0.05)
        and calibration["examples"] == 12
        and calibration["bins"] == 10
    )
    config = json.loads((run_dir / "model" / "config.json").read_text())
    assert config[CONFIG_KEY]["temperature"] == pytest.approx(temperature)
    assert json.loads((run_dir / "results.json").read_text())["calibration"]["temperature"] == temperature

    names = result.results["labels"]
    labels = np.array([names.index(r["label"]) for r in rows])
    logits = saved_logits(run_dir / "model", [r["text"] for r in rows])
    # the saved model computes logits / T: its NLL is the calibrated one, times T the uncalibrated one
    assert negative_log_likelihood(logits, labels) == pytest.approx(calibration["nll_after"], abs=1e-4)
    assert negative_log_likelihood(logits * temperature, labels) == pytest.approx(
        calibration["nll_before"], abs=1e-4
    )
    # answers, so accuracy, are those the final evaluation scored before calibration
    accuracy = float((logits.argmax(-1) == labels).mean())
    assert accuracy == pytest.approx(result.results["final_metrics"]["accuracy"])
    top = pipeline("text-classification", model=str(run_dir / "model"))(rows[0]["text"])[0]
    assert top["score"] == pytest.approx(softmax(logits[:1]).max(), abs=1e-5)

    report = (run_dir / "report.md").read_text()
    assert "## Calibration" in report and "ECE (10 bins)" in report
    assert "![Reliability diagram](calibration.png)" in report and (run_dir / "calibration.png").is_file()


def finished(logits, labels):
    """What `calibrate_run` reads of a trainer whose final evaluation gave these outputs."""
    from types import SimpleNamespace

    outputs = SimpleNamespace(last_outputs=np.asarray(logits), last_labels=np.asarray(labels))
    return SimpleNamespace(compute_metrics=outputs, args=SimpleNamespace(use_cpu=True))


def test_over_confident_outputs_are_calibrated_by_folding_the_fitted_t(one_thread):
    from conftest import tiny_bert

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    logits = 8.0 * np.eye(2)[labels] + rng.normal(0, 1, (400, 2))
    labels[:80] = 1 - labels[:80]  # 20% wrong, with near-certain confidence
    model = tiny_bert()
    weight = model.classifier.weight.detach().clone()
    summary = calibrate_run(validate_recipe({}), model, finished(logits, labels), 400, 2)
    assert summary["temperature"] > 2 and summary["ece_after"] < summary["ece_before"] / 2
    torch.testing.assert_close(model.classifier.weight, weight / summary["temperature"])
    assert model.config.finetune_calibration["temperature"] == summary["temperature"]


def test_a_validation_split_answered_all_right_is_not_fitted(one_thread):
    from conftest import tiny_bert

    model = tiny_bert()
    weight = model.classifier.weight.detach().clone()
    summary = calibrate_run(validate_recipe({}), model, finished([[3.0, 0.0], [0.0, 1.0]], [0, 1]), 2, 2)
    assert "every validation example is answered right" in summary["skipped"]
    assert torch.equal(model.classifier.weight, weight) and CONFIG_KEY not in model.config.to_dict()


@pytest.mark.parametrize("task", ["regression", "multi_label", "token_classification"])
def test_temperature_true_for_a_task_without_one_softmax_is_refused(task):
    with pytest.raises(RecipeError, match=f"single-label classification; model.task is {task}"):
        validate_recipe({"model": {"task": task}, "calibration": {"temperature": True}})


def test_temperature_true_with_sharded_weights_is_refused():
    recipe = {"calibration": {"temperature": True}, "distributed": {"strategy": "fsdp"}}
    with pytest.raises(RecipeError, match="fsdp shards the head's weights"):
        validate_recipe(recipe)


def test_auto_skips_a_sharded_head_and_says_why(monkeypatch):
    recipe = validate_recipe({"distributed": {"strategy": "fsdp"}})
    assert skip_reason(recipe) is None  # one process keeps the model whole
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert skip_reason(recipe) == "skipped: fsdp shards the head, which cannot be rescaled in place"
    assert skip_reason(validate_recipe({})) is None  # ddp replicas: every process folds T


def test_auto_calibrates_single_label_classification_only():
    for task, wanted in [("classification", True), ("regression", False), ("multi_label", False)]:
        recipe = validate_recipe({"model": {"task": task}})
        assert recipe.calibration.wanted(task) is wanted
        assert (skip_reason(recipe) is None) is wanted
    assert not validate_recipe({"calibration": {"temperature": False}}).calibration.wanted("classification")


def test_a_run_that_hands_back_its_starting_weights_hands_them_back_unchanged(one_thread):
    from conftest import tiny_bert

    model = tiny_bert()
    weight = model.classifier.weight.detach().clone()
    outputs = finished([[3.0, 0.0], [0.0, 1.0], [2.0, 0.0]], [0, 1, 1])
    summary = calibrate_run(validate_recipe({}), model, outputs, 3, 2, best_step=0)
    assert "weights it started from" in summary["skipped"] and torch.equal(model.classifier.weight, weight)
