"""Multi-label classification: label sets from CSV and JSON, BCE loss, thresholded metrics, a full run."""

import json

import numpy as np
import pytest
import torch
from conftest import write_rows

from finetune.data.task_data import load_task_data
from finetune.errors import DataError, RecipeError
from finetune.inference.evaluate import evaluate_file
from finetune.recipe import validate_recipe
from finetune.recipe.data import DataSection
from finetune.regularization.losses import task_loss
from finetune.training.metrics import available_metrics, metrics_function, multi_label_metrics
from finetune.training.run import train

TOPICS = [
    ("the striker scored twice in the final", "sports"),
    ("parliament passed the budget vote", "politics"),
    ("the minister opened the football stadium", "politics,sports"),
    ("the senator ran a marathon for charity", "politics,sports"),
    ("the goalkeeper saved a penalty", "sports"),
    ("the election results were announced", "politics"),
    ("a quiet afternoon with tea", ""),
    ("the weather was mild today", ""),
]


def topic_rows(repeat: int = 3) -> list[dict]:
    return [{"text": text, "label": labels} for _ in range(repeat) for text, labels in TOPICS]


@pytest.fixture
def topics_csv(tmp_path):
    return write_rows(tmp_path / "train.csv", topic_rows(3)), write_rows(tmp_path / "dev.csv", topic_rows(1))


def load(**data):
    return load_task_data(DataSection(**data), "multi_label", 0)


def test_csv_label_cells_become_multi_hot_vectors(topics_csv):
    train, dev = topics_csv
    data = load(train=str(train), validation=str(dev))
    assert data.label_names == ["politics", "sports"]
    assert data.num_labels == 2
    assert data.validation["labels"][:4] == [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [1.0, 1.0]]
    assert data.validation["labels"][6] == [0.0, 0.0]  # an empty cell: no label applies
    assert data.train.features["labels"].feature.dtype == "float32"


def test_json_lists_and_a_custom_separator(tmp_path):
    rows = [{"text": "a", "tags": ["x", "y"]}, {"text": "b", "tags": ["z"]}, {"text": "c", "tags": []}]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    data = load(train=str(path), validation=str(path), label="tags")
    assert data.label_names == ["x", "y", "z"]
    assert data.train["labels"] == [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]

    piped = write_rows(tmp_path / "p.csv", [{"text": "a", "label": "x|y"}, {"text": "b", "label": "y"}])
    data = load(train=str(piped), validation=str(piped), label_separator="|")
    assert data.train["labels"] == [[1.0, 1.0], [0.0, 1.0]]


def test_unknown_validation_label_and_single_label_are_errors(tmp_path, topics_csv):
    train, _ = topics_csv
    dev = write_rows(tmp_path / "bad.csv", [{"text": "x", "label": "sports,weather"}])
    with pytest.raises(
        DataError, match=r"labels \['weather'\] in .*bad.csv never occur in the training data"
    ):
        load(train=str(train), validation=str(dev))
    one = write_rows(tmp_path / "one.csv", [{"text": "x", "label": "a;b"}, {"text": "y", "label": "a;b"}])
    with pytest.raises(DataError, match="multi_label needs at least two. Is data.label_separator right"):
        load(train=str(one))


def test_metrics_at_the_threshold():
    probabilities = np.array([[0.9, 0.2], [0.6, 0.7], [0.1, 0.4]])
    logits = np.log(probabilities / (1 - probabilities))
    gold = np.array([[1, 0], [1, 0], [0, 1]], dtype=float)
    # threshold 0.5 -> predictions [1,0], [1,1], [0,0]: tp 2, fp 1, fn 1
    metrics = multi_label_metrics(logits, gold, 0.5)
    assert metrics["precision_micro"] == pytest.approx(2 / 3)
    assert metrics["recall_micro"] == pytest.approx(2 / 3)
    assert metrics["f1_micro"] == pytest.approx(2 / 3)
    assert metrics["f1_macro"] == pytest.approx((1.0 + 0.0) / 2)  # label 0 all right, label 1 never
    assert metrics["subset_accuracy"] == pytest.approx(1 / 3)
    # threshold 0.35 -> [1,0], [1,1], [0,1]: every gold label found, one false positive
    lower = multi_label_metrics(logits, gold, 0.35)
    assert lower["recall_micro"] == 1.0 and lower["subset_accuracy"] == pytest.approx(2 / 3)


def test_compute_function_uses_the_threshold():
    from transformers import EvalPrediction

    prediction = EvalPrediction(predictions=np.array([[0.1, -3.0]]), label_ids=np.array([[1.0, 0.0]]))
    assert metrics_function("multi_label", 2, threshold=0.5)(prediction)["f1_micro"] == 1.0
    assert metrics_function("multi_label", 2, threshold=0.6)(prediction)["f1_micro"] == 0.0


def test_loss_is_binary_cross_entropy_with_smoothing_toward_half():
    logits = torch.tensor([[2.0, -1.0]])
    labels = torch.tensor([[1.0, 0.0]])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
    assert task_loss(logits, labels, "multi_label") == pytest.approx(float(expected))
    smoothed = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor([[0.95, 0.05]]))
    assert task_loss(logits, labels, "multi_label", 0.1) == pytest.approx(float(smoothed))


def test_recipe_checks_threshold_and_metric():
    recipe = validate_recipe({"model": {"task": "multi_label", "threshold": 0.3}})
    assert recipe.model.decision_threshold == 0.3
    assert recipe.early_stopping.watched_metric("multi_label") == "f1_micro"
    assert validate_recipe({"model": {"task": "multi_label"}}).model.decision_threshold == 0.5
    with pytest.raises(RecipeError, match="`threshold` only applies to task `multi_label`"):
        validate_recipe({"model": {"threshold": 0.3}})
    with pytest.raises(RecipeError, match="early_stopping.metric: 'accuracy' is not a multi_label metric"):
        validate_recipe({"model": {"task": "multi_label"}, "early_stopping": {"metric": "accuracy"}})
    assert "subset_accuracy" in available_metrics("multi_label", 5)


def test_multi_label_run_with_freezing_and_early_stopping(tiny_recipe, topics_csv):
    from transformers import AutoModelForSequenceClassification, pipeline

    train_path, dev_path = topics_csv
    tiny_recipe["model"].update(task="multi_label", threshold=0.4)
    tiny_recipe["data"].update(train=str(train_path), validation=str(dev_path))
    tiny_recipe["freeze"] = {"embeddings": True, "layers": [0, 1]}
    tiny_recipe["training"]["epochs"] = 4
    tiny_recipe["early_stopping"] = {"metric": "f1_macro", "patience": 1}
    tiny_recipe["regularization"] = {"label_smoothing": 0.1}
    tiny_recipe["evaluation"]["before_training"] = False  # else the unlearned start stays best
    result = train(validate_recipe(tiny_recipe))
    results = result.results
    assert results["metric"] == "f1_macro"
    assert results["labels"] == ["politics", "sports"]
    assert set(results["final_metrics"]) >= {"f1_micro", "f1_macro", "subset_accuracy", "loss"}
    assert results["final_metrics"]["f1_macro"] == results["best"]["value"]  # best weights restored
    assert results["frozen_blocks"] == ["embeddings", "layer.0", "layer.1"]

    folder = result.run_dir / "model"
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    assert model.config.problem_type == "multi_label_classification"
    assert model.config.multi_label_threshold == 0.4
    scores = pipeline("text-classification", model=str(folder), top_k=None)(["the striker scored"])[0]
    assert {s["label"] for s in scores} == {"politics", "sports"}
    assert sum(s["score"] for s in scores) != pytest.approx(1.0, abs=1e-3)  # sigmoid, not softmax

    summary = evaluate_file(result.run_dir, dev_path)  # at the run's threshold, 0.4
    assert summary["threshold"] == 0.4
    for name in ("f1_micro", "f1_macro", "subset_accuracy"):
        assert summary["metrics"][name] == pytest.approx(results["final_metrics"][name]), name
    assert (result.run_dir / "evaluations" / "dev" / "per_label.png").is_file()
