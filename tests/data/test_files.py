"""Data files (data/files.py): formats, paths, encodings, read errors, header-less files, builtin:demo."""

import json

import pytest
from conftest import sentiment_rows

from finetune.data.task_data import load_task_data
from finetune.errors import DataError, RecipeError
from finetune.recipe import validate_recipe
from finetune.recipe.data import DataSection


def load(task="classification", seed=0, **data):
    return load_task_data(DataSection(**data), task, seed)


def test_tsv_keeps_quote_characters_and_strips_bom(tmp_path):
    path = tmp_path / "pairs.tsv"
    lines = [
        "\ufeffQuality\t#1 String\t#2 String",
        '1\tHe said "yes\tShe said "no" twice',
        '0\t"Quoted" start\tplain text',
        "1\tthird\tfourth",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = load(
        train=str(path), validation=str(path), text="#1 String", text_pair="#2 String", label="Quality"
    )
    assert data.is_pair
    assert data.train["text"] == ['He said "yes', '"Quoted" start', "third"]
    assert data.train["text_pair"][0] == 'She said "no" twice'


def test_headerless_tsv_uses_positions(tmp_path):
    path = tmp_path / "raw.tsv"
    path.write_text("good stuff\t1\nbad stuff\t0\nfine stuff\t1\n", encoding="utf-8")
    data = load(train=str(path), validation=str(path), header=False, text=0, label=1)
    assert len(data.train) == 3
    assert data.train["text"][0] == "good stuff"


def test_jsonl_and_parquet(tmp_path):
    rows = sentiment_rows(2)
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    parquet = tmp_path / "d.parquet"
    import pandas as pd

    pd.DataFrame(rows).to_parquet(parquet)
    for path in (jsonl, parquet):
        data = load(train=str(path), validation=str(path))
        assert len(data.train) == len(rows)
        assert data.label_names == ["neg", "pos"]


def test_missing_file_is_an_error_naming_the_key(tmp_path):
    with pytest.raises(DataError, match="data.train: file not found"):
        load(train=str(tmp_path / "nope.csv"))


def test_missing_file_suggests_similar_names(tmp_path, sentiment_csv):
    train, _ = sentiment_csv
    with pytest.raises(DataError, match="train.csv"):
        load(dir=str(train.parent), train="trian.csv")


def test_a_folder_given_as_a_data_file_says_a_file_is_expected(tmp_path, sentiment_csv):
    folder = tmp_path / "somefolder"
    folder.mkdir()
    (folder / "train.csv").write_text("text,label\na,pos\n")
    with pytest.raises(DataError) as error:
        load(dir=str(tmp_path), train="somefolder")
    message = str(error.value)
    assert f"data.train: {folder} is a folder, but data.train takes a data file" in message
    assert "not found" not in message and f"e.g. data.train={folder / 'train.csv'}" in message


def test_empty_split_is_an_error(tmp_path, sentiment_csv):
    train, _ = sentiment_csv
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n")
    with pytest.raises(DataError, match="data.validation: .* has no rows"):
        load(train=str(train), validation=str(empty))


def test_builtin_demo_set():
    data = load(dir="builtin:demo", train="train.csv", validation="dev.csv")
    assert data.label_names == ["negative", "positive"]
    assert len(data.train) >= 200 and len(data.validation) >= 60


def test_latin1_file_names_the_line_of_the_first_bad_byte(tmp_path):
    rows = "text,label\ngood film,pos\ncaf\xe9 au lait,neg\nfine,pos\nbad,neg\n"
    path = tmp_path / "latin1.csv"
    path.write_bytes(rows.encode("latin-1"))
    headerless = tmp_path / "latin1-raw.csv"
    headerless.write_bytes(rows.split("\n", 1)[1].encode("latin-1"))
    for file, line, options in ((path, 3, {}), (headerless, 2, {"text": 0, "label": 1, "header": False})):
        with pytest.raises(DataError) as error:
            load(train=str(file), **options)
        message = str(error.value)
        assert f"{file} is not valid utf-8 text" in message and f"line {line}, column 4" in message
        assert "re-encode the file as utf-8 or set data.encoding: latin-1" in message.lower()
    data = load(train=str(path), validation=str(path), encoding="latin-1")
    assert "caf\xe9 au lait" in data.train["text"]


def test_ragged_row_names_file_line_and_column_counts(tmp_path):
    csv_file = tmp_path / "ragged.csv"
    csv_file.write_text("text,label\ngood,pos\nbad, really bad,neg\nfine,pos\n", encoding="utf-8")
    tsv_file = tmp_path / "ragged.tsv"
    tsv_file.write_text("text\tlabel\ngood\tpos\nbad\tneg\nfine\tpos\tx\n", encoding="utf-8")
    second = tmp_path / "second.csv"  # pandas would take the extra value for an index column
    second.write_text("text,label\nbad, really bad,neg\ngood,pos\n", encoding="utf-8")
    for file, line in ((csv_file, 3), (tsv_file, 4), (second, 2)):
        with pytest.raises(
            DataError, match=rf"data.train: .*{file.name}, line {line}: 3 columns where the header"
        ):
            load(train=str(file))


@pytest.mark.parametrize("name", ["empty.csv", "empty.jsonl"])
def test_zero_byte_file_is_empty(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(DataError, match=rf"data.train: .*{name} is empty \(0 bytes\)"):
        load(train=str(tmp_path / name))


def test_integer_positions_mean_no_header_row(tmp_path):
    path = tmp_path / "raw.csv"
    path.write_text("first row,pos\nsecond row,neg\nthird row,pos\nfourth row,neg\n", encoding="utf-8")
    data = load(train=str(path), validation=str(path), text=0, label=1)
    assert data.train["text"][0] == "first row" and len(data.train) == 4
    recipe = {"data": {"train": str(path), "text": 0, "label": 1, "header": True}}
    with pytest.raises(RecipeError, match=r"data.header is true but data.text is a column position \(0\)"):
        validate_recipe(recipe)
