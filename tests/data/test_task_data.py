"""Loading (data/task_data.py): a classification needs two classes; tokenization of the text splits."""

import pytest
from conftest import write_rows

from finetune.data.task_data import load_task_data, tokenize
from finetune.errors import DataError
from finetune.recipe.data import DataSection


def load(task="classification", seed=0, **data):
    return load_task_data(DataSection(**data), task, seed)


def test_single_class_is_an_error(tmp_path):
    path = write_rows(tmp_path / "one.csv", [{"text": "a", "label": "x"}, {"text": "b", "label": "x"}])
    with pytest.raises(DataError, match="single label"):
        load(train=str(path), validation=str(path))


def test_tokenize_truncates_and_records_length(sentiment_csv, tiny_model_dir):
    from transformers import AutoTokenizer

    train, dev = sentiment_csv
    data = load(train=str(train), validation=str(dev))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokens = tokenize(data.train, tokenizer, max_length=4)
    assert set(tokens.column_names) >= {"input_ids", "attention_mask", "labels", "length"}
    assert max(tokens["length"]) == 4
    assert all(len(ids) == n for ids, n in zip(tokens["input_ids"], tokens["length"]))
