"""Token classification: CoNLL and JSON reading, sub-word label alignment, seqeval metrics, a full run."""

import json

import numpy as np
import pytest
import torch

from finetune.data.task_data import load_task_data
from finetune.data.tokens import IGNORED, align_labels, parse_conll, tokenize_words
from finetune.errors import DataError, RecipeError
from finetune.inference.evaluate import evaluate_file
from finetune.recipe import validate_recipe
from finetune.recipe.data import DataSection
from finetune.regularization.losses import task_loss
from finetune.training.metrics import entity_metrics, token_metrics
from finetune.training.run import train

SENTENCES = [
    [("Ada", "B-PER"), ("Lovelace", "I-PER"), ("lived", "O"), ("in", "O"), ("London", "B-LOC")],
    [("Paris", "B-LOC"), ("is", "O"), ("lovely", "O")],
    [("Alan", "B-PER"), ("Turing", "I-PER"), ("visited", "O"), ("Manchester", "B-LOC")],
    [("The", "O"), ("weather", "O"), ("was", "O"), ("mild", "O")],
]


def conll_text(sentences=SENTENCES, separator=" ", repeat=1) -> str:
    blocks = ["\n".join(f"{w}{separator}{t}" for w, t in s) for s in sentences] * repeat
    return "-DOCSTART- -X- O O\n\n" + "\n\n".join(blocks) + "\n"


@pytest.fixture
def conll_files(tmp_path):
    train = tmp_path / "train.conll"
    train.write_text(conll_text(repeat=4))
    dev = tmp_path / "dev.txt"
    dev.write_text(conll_text(separator="\t"))
    return train, dev


def load(**data):
    return load_task_data(DataSection(**data), "token_classification", 0)


def test_parse_conll_takes_first_and_last_columns_and_skips_docstart():
    text = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n\nPeter NNP B-NP B-PER\n"
    words, tags = parse_conll(text, "f")
    assert words == [["EU", "rejects"], ["Peter"]]
    assert tags == [["B-ORG", "O"], ["B-PER"]]
    tabbed, _ = parse_conll("New York\tB-LOC\n", "f")  # tabs: a word may hold a space
    assert tabbed == [["New York"]]
    with pytest.raises(DataError, match="f, line 2: expected a word and its tag"):
        parse_conll("Ada B-PER\nLovelace\n", "f")


def test_conll_files_load_with_sorted_tags(conll_files):
    train, dev = conll_files
    data = load(train=str(train), validation=str(dev))
    assert data.label_names == ["B-LOC", "B-PER", "I-PER", "O"]
    assert len(data.train) == 16 and len(data.validation) == 4
    assert data.validation[0]["tokens"] == ["Ada", "Lovelace", "lived", "in", "London"]
    assert data.validation[0]["labels"] == [1, 2, 3, 3, 0]


def test_json_word_and_tag_lists(tmp_path):
    path = tmp_path / "train.jsonl"
    rows = [{"words": [w for w, _ in s], "ner": [t for _, t in s]} for s in SENTENCES]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    data = load(train=str(path), validation=str(path), text="words", label="ner")
    assert data.train[1] == {"tokens": ["Paris", "is", "lovely"], "labels": [0, 3, 3]}


def test_bad_token_files_name_the_row(tmp_path, conll_files):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"tokens": ["a", "b"], "tags": ["O"]}) + "\n")
    with pytest.raises(DataError, match="row 1 of .*bad.jsonl has 2 words but 1 tags"):
        load(train=str(path), text="tokens", label="tags")
    numeric = tmp_path / "numeric.jsonl"
    numeric.write_text(json.dumps({"tokens": ["a"], "tags": [3]}) + "\n")
    with pytest.raises(DataError, match="numeric tags"):
        load(train=str(numeric), text="tokens", label="tags")
    train, _ = conll_files
    dev = tmp_path / "dev.conll"
    dev.write_text("Rome B-CITY\n")
    with pytest.raises(DataError, match=r"tags \['B-CITY'\] in .*dev.conll never occur"):
        load(train=str(train), validation=str(dev))


def test_recipe_rejects_pairs_and_conll_for_other_tasks():
    with pytest.raises(RecipeError, match="data.text_pair: token_classification tags one text"):
        validate_recipe({"model": {"task": "token_classification"}, "data": {"text_pair": "b"}})
    with pytest.raises(RecipeError, match="data.format: `conll` files hold token tags"):
        validate_recipe({"data": {"format": "conll"}})
    recipe = validate_recipe({"model": {"task": "token_classification"}})
    assert recipe.early_stopping.watched_metric("token_classification") == "f1"


def test_first_sub_word_carries_the_label():
    # [CLS] Love ##lace lived [SEP]: word ids None, 0, 0, 1, None
    assert align_labels([None, 0, 0, 1, None], [5, 7]) == [IGNORED, 5, IGNORED, 7, IGNORED]


def test_tokenize_words_aligns_labels_with_a_real_tokenizer(tiny_model_dir):
    from datasets import Dataset
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    words = ["Lovelace", "wrote", "algorithms"]
    encoded = tokenize_words(Dataset.from_dict({"tokens": [words], "labels": [[1, 0, 0]]}), tokenizer, 32)[0]
    pieces = tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    labelled = [piece for piece, label in zip(pieces, encoded["labels"]) if label != IGNORED]
    assert labelled == [
        tokenizer.tokenize(word)[0] for word in words
    ]  # one label per word, on its first piece
    assert len(pieces) > len(words) + 2  # some word was split into several pieces
    assert encoded["length"] == len(pieces)
    truncated = tokenize_words(
        Dataset.from_dict({"tokens": [words * 10], "labels": [[0] * 30]}), tokenizer, 8
    )
    assert len(truncated[0]["labels"]) == 8 and truncated[0]["labels"][-1] == IGNORED


def test_entity_level_metrics_count_whole_spans():
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    predicted = [["B-PER", "O", "O", "B-LOC"]]  # the person's span is cut short: wrong entity
    metrics = entity_metrics(gold, predicted)
    assert metrics["precision"] == 0.5 and metrics["recall"] == 0.5 and metrics["f1"] == 0.5
    assert metrics["accuracy"] == 0.75


def test_token_metrics_skip_ignored_positions():
    names = ["B-LOC", "O"]
    logits = np.array([[[0, 9], [9, 0], [0, 9], [5, 0]]], dtype=float)  # O, B-LOC, O, (B-LOC on -100)
    labels = np.array([[IGNORED, 0, 1, IGNORED]])
    metrics = token_metrics(logits, labels, names)
    assert metrics["f1"] == 1.0 and metrics["accuracy"] == 1.0


def test_token_loss_ignores_unlabelled_sub_words():
    logits = torch.randn(2, 3, 4)
    labels = torch.tensor([[IGNORED, 1, 2], [3, IGNORED, IGNORED]])
    expected = torch.nn.functional.cross_entropy(logits[labels != IGNORED], labels[labels != IGNORED])
    assert task_loss(logits, labels, "token_classification") == pytest.approx(float(expected))
    assert task_loss(logits, labels, "token_classification", 0.1) > 0


def test_token_classification_run_with_freezing_and_early_stopping(tiny_recipe, conll_files):
    from transformers import AutoModelForTokenClassification, pipeline

    train_path, dev_path = conll_files
    tiny_recipe["model"]["task"] = "token_classification"
    tiny_recipe["data"].update(train=str(train_path), validation=str(dev_path))
    tiny_recipe["freeze"] = {"embeddings": True, "layers": ["0-1"]}
    tiny_recipe["training"].update(epochs=3, batch_size=4)
    tiny_recipe["early_stopping"] = {"patience": 1}
    result = train(validate_recipe(tiny_recipe))
    results = result.results
    assert results["metric"] == "f1"
    assert results["labels"] == ["B-LOC", "B-PER", "I-PER", "O"]
    assert set(results["final_metrics"]) >= {"f1", "precision", "recall", "accuracy", "loss"}
    assert results["final_metrics"]["f1"] == results["best"]["value"]
    assert results["frozen_blocks"] == ["embeddings", "layer.0", "layer.1"]

    folder = result.run_dir / "model"
    model = AutoModelForTokenClassification.from_pretrained(folder)
    assert model.config.id2label[1] == "B-PER"
    tagged = pipeline("token-classification", model=str(folder))("Ada lived in Paris")
    assert all(item["entity"] in results["labels"] for item in tagged)

    # `finetune evaluate` scores per word; no word is truncated here, so it matches validation
    summary = evaluate_file(result.run_dir, dev_path)
    for name in ("f1", "precision", "recall", "accuracy"):
        assert summary["metrics"][name] == pytest.approx(results["final_metrics"][name]), name


def test_hub_style_tag_ids_with_class_names_become_names():
    from datasets import ClassLabel, Dataset, Features, List, Value

    from finetune.data.tokens import word_columns

    features = Features({"tokens": List(Value("string")), "ner_tags": List(ClassLabel(names=["O", "B-PER"]))})
    dataset = Dataset.from_dict({"tokens": [["Ada", "wrote"]], "ner_tags": [[1, 0]]}, features=features)
    converted = word_columns(dataset, DataSection(text="tokens", label="ner_tags"), "conll2003[train]")
    assert converted[0] == {"tokens": ["Ada", "wrote"], "labels": ["B-PER", "O"]}


def test_hub_style_tag_id_minus_one_is_an_error():
    from datasets import ClassLabel, Dataset, Features, List, Value

    from finetune.data.tokens import word_columns

    features = Features({"tokens": List(Value("string")), "ner_tags": List(ClassLabel(names=["O", "B-PER"]))})
    dataset = Dataset.from_dict(
        {"tokens": [["Ada"], ["Ada", "wrote"]], "ner_tags": [[1], [-1, -1]]}, features=features
    )
    with pytest.raises(
        DataError, match=r"column 'ner_tags' has no label \(-1\) in row 2 of conll2003\[test\]"
    ):
        word_columns(dataset, DataSection(text="tokens", label="ner_tags"), "conll2003[test]")
