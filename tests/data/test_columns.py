"""Columns (data/columns.py): missing columns, null and empty texts, hub ClassLabel ids as names."""

import json

import pytest
from conftest import sentiment_rows, write_rows

from finetune.data.task_data import load_task_data
from finetune.errors import DataError
from finetune.recipe.data import DataSection


def load(task="classification", seed=0, **data):
    return load_task_data(DataSection(**data), task, seed)


def test_missing_column_lists_the_columns(sentiment_csv):
    train, dev = sentiment_csv
    with pytest.raises(DataError) as error:
        load(train=str(train), validation=str(dev), text="sentence")
    assert "column 'sentence' not found" in str(error.value)
    assert "Columns there: text, label" in str(error.value)


def test_null_text_is_an_error_naming_column_and_row(tmp_path):
    rows = [{"text": "fine", "other": "x", "label": "a"}, {"text": "ok", "other": "y", "label": "b"}]
    rows.append({"text": "third", "other": None, "label": "a"})
    path = tmp_path / "nulls.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(
        DataError, match=r"data.text_pair: column 'other' is empty \(null\) in row 3 of .*nulls.jsonl"
    ):
        load(train=str(path), validation=str(path), text_pair="other")
    rows[0]["text"] = None
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(
        DataError, match=r"data.text: column 'text' is empty \(null\) in row 1 of .*nulls.jsonl"
    ):
        load(train=str(path), validation=str(path))


def hub_splits(monkeypatch, train_labels, validation_labels, names=("negative", "positive")):
    """In-memory datasets with a ClassLabel column, served by `load_hub` (what the hub path reads)."""
    from datasets import ClassLabel, Dataset, Features, Value

    import finetune.data.task_data

    features = Features({"sentence": Value("string"), "label": ClassLabel(names=list(names))})

    def split(labels):
        return Dataset.from_dict(
            {"sentence": [f"s{i}" for i in range(len(labels))], "label": labels}, features
        )

    splits = {"train": split(train_labels), "validation": split(validation_labels)}
    monkeypatch.setattr(finetune.data.task_data, "load_hub", lambda spec: splits)


def test_hub_class_label_ids_become_their_names(monkeypatch):
    hub_splits(monkeypatch, [0, 1, 1, 0, 1], [1, 0])
    data = load(hub={"name": "glue", "config": "sst2"}, text="sentence")
    assert data.label_names == ["negative", "positive"]
    assert data.train["labels"] == [0, 1, 1, 0, 1]
    assert data.validation["labels"] == [1, 0]
    assert data.sources["train"] == "glue/sst2[train]"


def test_hub_class_names_keep_the_data_sets_ids(monkeypatch):
    """Not sorted: the model's label ids are the data set's (MNLI's order is not alphabetical)."""
    names = ("entailment", "neutral", "contradiction")
    hub_splits(monkeypatch, [0, 1, 2, 2, 0], [2, 1], names=names)
    data = load(hub={"name": "nyu-mll/glue", "config": "mnli"}, text="sentence")
    assert data.label_names == list(names)
    assert data.train["labels"] == [0, 1, 2, 2, 0]
    assert data.validation["labels"] == [2, 1]


def test_hub_unlabelled_split_is_an_error(monkeypatch):
    hub_splits(monkeypatch, [0, 1, 1], [1, -1])
    with pytest.raises(
        DataError, match=r"data.label: column 'label' has no label \(-1\) in row 2 of glue/sst2\[validation\]"
    ):
        load(hub={"name": "glue", "config": "sst2"}, text="sentence")


def test_empty_texts_are_counted_and_mostly_empty_is_an_error(tmp_path, capsys):
    rows = sentiment_rows(1) + [{"text": " ", "label": "pos"}, {"text": "", "label": "neg"}]
    some = write_rows(tmp_path / "some.csv", rows)
    data = load(train=str(some), validation=str(some))
    assert len(data.train) == len(rows)  # kept, and said
    note = f"note: data.text: 2 of 14 texts in column 'text' of {some} are empty or whitespace-only"
    assert note in capsys.readouterr().out
    blank = write_rows(tmp_path / "blank.csv", [{"text": "", "label": "pos"}, {"text": "\t", "label": "neg"}])
    for split in (
        {"train": str(blank), "validation": str(some)},
        {"train": str(some), "validation": str(blank)},
    ):
        with pytest.raises(
            DataError, match=r"data.text: 2 of 2 texts in column 'text' of .*blank.csv are empty"
        ):
            load(**split)


def test_column_values_reads_whole_columns_through_selections_and_shuffles():
    from datasets import Dataset

    from finetune.data.columns import column_values

    dataset = Dataset.from_dict({"text": [f"t{i}" for i in range(10)], "labels": list(range(10))})
    picked = dataset.shuffle(seed=3).select([4, 0, 7])
    assert column_values(picked, "labels") == [picked[i]["labels"] for i in range(3)]
    assert (
        isinstance(column_values(picked, "labels"), list) and column_values(dataset.select([]), "text") == []
    )
