"""Loading (data/task_data.py): a classification needs two classes; tokenization of the text splits."""

from pathlib import Path

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


def test_a_second_load_of_the_same_files_reads_the_tokenized_rows_from_the_cache(
    sentiment_csv, tiny_model_dir, tmp_path, monkeypatch
):
    """The second run of a recipe (a sweep trial, a re-run) tokenizes nothing: `datasets` keys the
    tokenized rows by the file's content, the tokenizer and max_length, and reads its cache file."""
    import datasets
    from transformers import AutoTokenizer

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    train, dev = sentiment_csv
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)

    def tokenized(max_length=8):
        return tokenize(load(train=str(train), validation=str(dev)).train, tokenizer, max_length)

    first = tokenized()
    (cache,) = {f["filename"] for f in first.cache_files}
    assert cache.startswith(str(tmp_path / "cache"))
    written = Path(cache).stat().st_mtime_ns
    second = tokenized()
    assert {f["filename"] for f in second.cache_files} == {cache}
    assert Path(cache).stat().st_mtime_ns == written  # read, not written again
    assert second["input_ids"][:] == first["input_ids"][:]
    assert {f["filename"] for f in tokenized(max_length=4).cache_files} != {cache}  # another key
