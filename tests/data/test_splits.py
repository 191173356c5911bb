"""Splits (data/splits.py): the held-out validation set (seeded, stratified) and the no-data error."""

import pytest
from conftest import write_rows

from finetune.data.task_data import load_task_data
from finetune.errors import DataError
from finetune.recipe.data import DataSection


def load(task="classification", seed=0, **data):
    return load_task_data(DataSection(**data), task, seed)


def test_held_out_validation_is_seeded_and_stratified(tmp_path):
    # 40 "pos" and 8 "neg": a plain random 25% split holds exactly 2 "neg" only about a third of the time
    rows = [{"text": f"good {i}", "label": "pos"} for i in range(40)]
    rows += [{"text": f"bad {i}", "label": "neg"} for i in range(8)]
    train = write_rows(tmp_path / "unbalanced.csv", rows)
    splits = {seed: load(train=str(train), validation_fraction=0.25, seed=seed) for seed in range(5)}
    for seed, data in splits.items():
        assert len(data.validation) == 12, seed
        assert sorted(data.validation["labels"]) == [0] * 2 + [1] * 10, seed  # neg = 0: 1 in 6, as in train
    again = load(train=str(train), validation_fraction=0.25, seed=3)
    assert splits[3].validation["text"] == again.validation["text"]
    assert splits[3].validation["text"] != splits[4].validation["text"]


def test_unstratifiable_split_falls_back_with_a_note(tmp_path, capsys):
    rows = [{"text": f"good {i}", "label": "pos"} for i in range(9)] + [{"text": "bad", "label": "neg"}]
    train = write_rows(tmp_path / "rare.csv", rows)  # one "neg": it cannot be on both sides
    data = load(train=str(train), validation_fraction=0.2)
    assert len(data.validation) == 2 and len(data.train) == 8
    assert (
        "note: data.validation_fraction: the held-out validation set is not stratified"
        in capsys.readouterr().out
    )


def test_too_few_rows_to_hold_out_validation_is_a_data_error(tmp_path):
    train = write_rows(tmp_path / "two.csv", [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}])
    with pytest.raises(
        DataError, match=r"data.validation_fraction: cannot hold out 90% of the 2 rows of .*two.csv"
    ):
        load(train=str(train), validation_fraction=0.9)  # nothing would be left to train on
    single = write_rows(tmp_path / "one.csv", [{"text": "a", "label": 1.0}])
    with pytest.raises(DataError, match="cannot hold out 10% of the 1 rows"):
        load(task="regression", train=str(single))


def test_no_data_is_an_error():
    with pytest.raises(DataError, match="names no data"):
        load()
