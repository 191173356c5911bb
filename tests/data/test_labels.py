"""Label encoding (data/labels.py): class names to ids, labels unknown to train, regression targets."""

import pytest
from conftest import write_rows

from finetune.data.task_data import load_task_data
from finetune.errors import DataError
from finetune.recipe.data import DataSection


def load(task="classification", seed=0, **data):
    return load_task_data(DataSection(**data), task, seed)


def test_string_labels_map_to_sorted_ids(sentiment_csv):
    train, dev = sentiment_csv
    data = load(train=str(train), validation=str(dev))
    assert data.label_names == ["neg", "pos"]
    assert data.train.features["labels"].names == ["neg", "pos"]
    first = data.train[0]
    assert first["text"] == "great film" and first["labels"] == 1


def test_numeric_labels_sort_numerically(tmp_path):
    rows = [{"text": f"t{i}", "label": label} for i, label in enumerate([10, 2, 2, 10, 1, 1])]
    path = write_rows(tmp_path / "n.csv", rows)
    data = load(train=str(path), validation=str(path))
    assert data.label_names == ["1", "2", "10"]
    assert data.train["labels"] == [2, 1, 1, 2, 0, 0]


def test_validation_label_unknown_to_train_is_an_error(tmp_path, sentiment_csv):
    train, _ = sentiment_csv
    dev = write_rows(
        tmp_path / "dev2.csv", [{"text": "meh", "label": "neutral"}, {"text": "ok", "label": "pos"}]
    )
    with pytest.raises(DataError, match=r"labels \['neutral'\] .* never occur in the training data"):
        load(train=str(train), validation=str(dev))


def test_regression_target_must_be_numeric(tmp_path):
    path = write_rows(tmp_path / "r.csv", [{"text": "a", "label": "1.5"}, {"text": "b", "label": "high"}])
    with pytest.raises(DataError, match="regression target 'high' in row 2"):
        load(task="regression", train=str(path), validation=str(path))
