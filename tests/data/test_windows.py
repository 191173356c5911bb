"""`data.long_documents`: windows that reassemble to their documents, per-document aggregation and
metrics, the truncation report, training, prediction and evaluation on a synthetic set whose label
is only in the end of each text."""

import json
import random

import numpy as np
import pytest
from conftest import write_rows

from finetune.data.windows import (
    LongTexts,
    aggregate,
    dataset_documents,
    encode_splits,
    measure,
    window,
    window_stride,
)
from finetune.errors import DataError, RecipeError
from finetune.recipe import validate_recipe
from finetune.recipe.data import DataSection

FILLER = [
    "the",
    "a",
    "river",
    "stone",
    "house",
    "green",
    "blue",
    "cold",
    "warm",
    "road",
    "tree",
    "city",
    "music",
    "paper",
    "window",
    "light",
]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def texts_dataset(texts, pairs=None, labels=None):
    from datasets import Dataset

    columns = {"text": texts}
    if pairs is not None:
        columns["text_pair"] = pairs
    if labels is not None:
        columns["labels"] = labels
    return Dataset.from_dict(columns)


def content(tokenizer, ids):
    """Token ids without [CLS]/[SEP]."""
    return [i for i in ids if i not in tokenizer.all_special_ids]


def numbered(count):
    """`w0 w1 ...`: 2 tokens per word with MiniLM's tokenizer (`w`, `##7`)."""
    return " ".join(f"w{i}" for i in range(count))


def test_windows_cover_every_token_and_reassemble_to_their_documents(tokenizer):
    texts = [numbered(30), "a short one", numbered(9)]
    windows = window(texts_dataset(texts, labels=[1, 0, 1]), tokenizer, max_length=16, stride=4)
    documents = dataset_documents(windows)
    assert list(documents) == sorted(documents) and set(documents) == {0, 1, 2}
    for document, text in enumerate(texts):
        rows = [i for i, d in enumerate(documents) if d == document]
        pieces = [content(tokenizer, windows[i]["input_ids"]) for i in rows]
        assert all(len(windows[i]["input_ids"]) <= 16 for i in rows)
        assert all(windows[i]["length"] == len(windows[i]["input_ids"]) for i in rows)
        assert all(windows[i]["labels"] == [1, 0, 1][document] for i in rows)  # the document's label
        rebuilt = pieces[0]
        for before, piece in zip(pieces, pieces[1:]):
            assert piece[:4] == before[-4:]  # consecutive windows share `stride` tokens
            rebuilt += piece[4:]
        assert rebuilt == content(tokenizer, tokenizer(text)["input_ids"])
    # 60 content tokens in windows of 14 moving by 10: 14 + 10 * 5 = 64 >= 60, so 6 windows
    assert list(documents).count(0) == 6 and list(documents).count(1) == 1


def test_pairs_window_the_second_text_and_repeat_the_first(tokenizer):
    windows = window(texts_dataset(["is it w?"], [numbered(20)]), tokenizer, max_length=20, stride=3)
    first = content(tokenizer, tokenizer("is it w?")["input_ids"])
    assert len(windows) > 1
    rebuilt = []
    for row in windows:
        ids, types = row["input_ids"], row["token_type_ids"]
        second = [i for i, t in zip(ids, types) if t == 1]
        assert content(tokenizer, [i for i, t in zip(ids, types) if t == 0]) == first
        rebuilt += content(tokenizer, second)[3 if rebuilt else 0 :]
    assert rebuilt == content(tokenizer, tokenizer(numbered(20))["input_ids"])


def test_aggregation_by_hand_on_two_documents_of_three_windows():
    # windows interleaved: documents 1, 0, 0, 1, 0, 1; in each document's order the first is its first row
    documents = [1, 0, 0, 1, 0, 1]
    logits = np.array([[1.0, 4.0], [2.0, 0.0], [0.0, 3.0], [3.0, 2.0], [1.0, 0.0], [-1.0, 0.0]])
    assert aggregate(logits, documents, "mean") == pytest.approx(np.array([[1.0, 1.0], [1.0, 2.0]]))
    assert aggregate(logits, documents, "max") == pytest.approx(np.array([[2.0, 3.0], [3.0, 4.0]]))
    assert aggregate(logits, documents, "first") == pytest.approx(np.array([[2.0, 0.0], [1.0, 4.0]]))
    assert aggregate(np.array([0.5, 2.0, 1.0]), [4, 4, 9], "mean") == pytest.approx([1.25, 1.0])


def test_metrics_count_documents_not_windows():
    from transformers import EvalPrediction

    from finetune.training.metrics import metrics_function, per_document

    documents = np.array([0, 0, 0, 1, 1, 1])  # data order
    # document 0 (label 1): windows say 0, 0, 1 but the max of class 1 wins; document 1 (label 0): right
    logits = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 5.0], [2.0, 0.0], [2.0, 0.0], [2.0, 0.0]])
    labels = np.array([1, 1, 1, 0, 0, 0])
    order = np.array([2, 5, 0, 3, 1, 4])  # a length-sorted loader's position -> window
    compute = metrics_function("classification", 2)
    by_max = per_document(compute, documents, "max", order)
    metrics = by_max(EvalPrediction(predictions=logits[order], label_ids=labels[order]))
    assert metrics["accuracy"] == 1.0  # 2 of 2 documents; per window it would be 4 of 6
    assert compute.last_outputs.shape == (2, 2)  # the learning check sees documents too
    by_first = per_document(compute, documents, "first", order)
    assert by_first(EvalPrediction(predictions=logits[order], label_ids=labels[order]))["accuracy"] == 0.5


def test_truncation_report_on_a_hand_made_split(tokenizer):
    texts = [numbered(10), numbered(4), numbered(20), "short"]  # 22, 10, 42 and 3 tokens with [CLS] [SEP]
    report = measure(texts_dataset(texts), tokenizer, max_length=16, split="validation")
    assert report.over == [6, 26]
    assert report.line() == (
        "validation: 2 of 4 texts longer than max_length 16 (median 16 tokens cut, max 26); "
        "truncated (data.long_documents would window them)"
    )
    assert report.summary()["longer_than_max_length"] == 2 and report.summary()["handled"] == "truncated"
    report.windows = 7
    assert report.line().endswith("(median 16 tokens over, max 26); windowed: 4 texts -> 7 windows")
    fits = LongTexts(split="train", texts=3, max_length=16, over=[])
    assert fits.line() == "train: every one of 3 texts fits in max_length 16"


def test_measuring_from_the_truncated_rows_re_tokenizes_only_those_at_max_length(tokenizer):
    from finetune.data.task_data import tokenize

    # 22, 10, 42, 3 and exactly 16 tokens: only the rows that reached 16 can be longer
    dataset = texts_dataset([numbered(10), numbered(4), numbered(20), "short", numbered(7)])
    truncated = tokenize(dataset, tokenizer, max_length=16)
    seen = []
    counting = lambda texts, *args, **kwargs: seen.extend(texts) or tokenizer(texts, *args, **kwargs)  # noqa: E731
    counting.num_special_tokens_to_add = tokenizer.num_special_tokens_to_add
    quick = measure(dataset, counting, max_length=16, split="train", truncated=truncated)
    assert quick == measure(dataset, tokenizer, max_length=16, split="train")
    assert quick.over == [6, 26] and quick.texts == 5
    assert seen == [numbered(10), numbered(20), numbered(7)]  # not the 10- and 3-token texts


def test_splits_are_windowed_or_truncated_as_the_recipe_says(tokenizer):
    from finetune.data.splits import TaskData

    train, validation = texts_dataset([numbered(20)], labels=[0]), texts_dataset(["short"], labels=[1])
    data = TaskData(train=train, validation=validation, task="classification", label_names=["a", "b"])
    windowed, _ = encode_splits(data, tokenizer, DataSection(max_length=16, long_documents={"stride": 4}))
    assert len(windowed) == 4 and data.long_texts["train"]["windows"] == 4  # 40 tokens: 14 + 10 + 10 + 10
    truncated, kept = encode_splits(data, tokenizer, DataSection(max_length=16))
    assert len(truncated) == 1 and dataset_documents(truncated) is None and len(kept) == 1
    assert data.long_texts["train"] == {
        "texts": 1,
        "longer_than_max_length": 1,
        "median_tokens_over": 26,
        "max_tokens_over": 26,
        "handled": "truncated",
        "windows": None,
    }


def test_recipe_key_defaults_and_bad_settings():
    assert window_stride(DataSection(max_length=128, long_documents=True)) == 32  # a quarter
    assert window_stride(DataSection(max_length=128, long_documents={"stride": 10}), max_length=64) == 10
    assert window_stride(DataSection(max_length=128)) is None
    assert DataSection(long_documents=False).long_documents is None
    with pytest.raises(RecipeError, match=r"data.long_documents.stride: 64 tokens .*max_length 64"):
        validate_recipe({"data": {"max_length": 64, "long_documents": {"stride": 64}}})
    with pytest.raises(RecipeError, match="data.long_documents: token_classification"):
        validate_recipe({"model": {"task": "token_classification"}, "data": {"long_documents": {}}})
    with pytest.raises(RecipeError, match="data.long_documents: regularization.word_deletion"):
        validate_recipe({"data": {"long_documents": {}}, "regularization": {"word_deletion": 0.1}})
    with pytest.raises(RecipeError, match="aggregate"):
        validate_recipe({"data": {"long_documents": {"aggregate": "median"}}})


def test_a_stride_that_leaves_no_room_is_refused_before_the_tokenizer_aborts(tokenizer):
    with pytest.raises(RecipeError, match=r"stride: 14 tokens .*\(14 tokens besides the special tokens"):
        window(texts_dataset([numbered(20)]), tokenizer, max_length=16, stride=14)
    long_first = texts_dataset([numbered(8)], [numbered(10)])  # 16 tokens of first text, pair max 24
    with pytest.raises(DataError, match=r"row 0\): the first text \(data.text\) has 16 tokens"):
        window(long_first, tokenizer, max_length=24, stride=6, split="train")


def verdict_rows(count, seed):
    """Filler words, then `verdict yes|no`: the label is only in the last tokens of every text."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        label = rng.choice(["yes", "no"])
        words = [rng.choice(FILLER) for _ in range(rng.randint(25, 40))]
        rows.append({"text": " ".join(words) + f" verdict {label}", "label": label})
    return rows


def verdict_recipe(folder, model_dir, long_documents):
    return validate_recipe(
        {
            "model": {"name": str(model_dir)},
            "data": {
                "train": str(write_rows(folder / "train.csv", verdict_rows(160, 1))),
                "validation": str(write_rows(folder / "dev.csv", verdict_rows(60, 2))),
                "max_length": 24,
                "long_documents": long_documents,
            },
            "optimizer": {"lr": 2e-3},
            "training": {"epochs": 5, "batch_size": 16, "seed": 0},
            "early_stopping": {"patience": 10},
            "output": {"dir": str(folder / ("windows" if long_documents else "truncated")), "plots": False},
        }
    )


@pytest.fixture(scope="module")
def verdict_runs(tmp_path_factory, tiny_model_dir):
    """The synthetic set trained twice with the tiny model: truncated, and as windows (max)."""
    from finetune.training.run import train

    folder = tmp_path_factory.mktemp("long-documents")
    truncated = train(verdict_recipe(folder, tiny_model_dir, None))
    windows = train(verdict_recipe(folder, tiny_model_dir, {"aggregate": "max", "stride": 4}))
    return truncated, windows, folder


def test_windows_learn_what_truncation_cannot_see(verdict_runs, one_thread):
    truncated, windows, _ = verdict_runs
    assert truncated.results["final_metrics"]["accuracy"] <= 0.6  # the label was cut off: chance
    assert windows.results["final_metrics"]["accuracy"] >= 0.85  # 0.92-1.0 over seeds 0-3
    long_texts = windows.results["long_texts"]
    assert long_texts["validation"]["texts"] == 60 and long_texts["validation"]["windows"] > 60
    assert truncated.results["long_texts"]["train"]["handled"] == "truncated"
    assert truncated.results["long_texts"]["train"]["longer_than_max_length"] == 160
    saved = json.loads((windows.run_dir / "results.json").read_text())
    assert saved["long_texts"] == long_texts


def test_predict_and_evaluate_use_the_runs_windows(verdict_runs, tmp_path, capsys):
    from finetune.inference.evaluate import evaluate_file
    from finetune.inference.predict import predict_file

    _, windows, folder = verdict_runs
    records = predict_file(windows.run_dir, folder / "dev.csv", tmp_path / "out.jsonl")
    assert len(records) == 60  # one per document, in file order
    gold = [row["label"] for row in verdict_rows(60, 2)]
    assert [r["text"] for r in records] == [row["text"] for row in verdict_rows(60, 2)]
    assert "60 texts -> " in capsys.readouterr().out
    summary = evaluate_file(windows.run_dir, folder / "dev.csv", tmp_path / "evaluation")
    assert summary["examples"] == 60 and summary["long_texts"]["handled"] == "windowed"
    accuracy = np.mean([r["label"] == g for r, g in zip(records, gold)])
    # the run's final evaluation aggregated the same windows the same way
    assert summary["metrics"]["accuracy"] == pytest.approx(accuracy)
    assert accuracy == pytest.approx(windows.results["final_metrics"]["accuracy"])


def test_trainer_predict_on_windows_returns_one_row_per_document(verdict_runs):
    _, windows, _ = verdict_runs
    trainer = windows.trainer
    assert len(trainer.eval_dataset) > 60  # windows
    output = trainer.predict(trainer.eval_dataset)
    assert output.predictions.shape == (60, 2)
    assert list(output.label_ids) == [["no", "yes"].index(r["label"]) for r in verdict_rows(60, 2)]
    assert output.metrics["test_accuracy"] == pytest.approx(windows.results["final_metrics"]["accuracy"])
