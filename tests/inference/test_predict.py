"""`finetune predict` and `finetune evaluate`: run folders and model folders, every task, order kept."""

import json

import numpy as np
import pytest
import torch
from conftest import sentiment_rows, tiny_bert_config, write_rows

from finetune.cli import main
from finetune.errors import DataError
from finetune.inference.evaluate import evaluate_file
from finetune.inference.predict import encode, infer, length_sorted_batches, load_predictor, predict_file
from finetune.recipe import validate_recipe
from finetune.training.run import train

TEXTS = [
    "great film",
    "a mess",
    "I loved it, truly wonderful and warm",
    "boring",
    "superb acting and a delight",
]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_model_dir):
    """One short classification run of the tiny model, shared by the tests of this module."""
    folder = tmp_path_factory.mktemp("predict")
    train_path = write_rows(folder / "train.csv", sentiment_rows(4))
    dev_path = write_rows(folder / "dev.csv", sentiment_rows(1))
    recipe = {
        "name": "tiny",
        "model": {"name": str(tiny_model_dir)},
        "data": {"train": str(train_path), "validation": str(dev_path), "max_length": 16},
        "optimizer": {"lr": 1e-3},
        "training": {"epochs": 1, "batch_size": 8, "seed": 0},
        "output": {"dir": str(folder / "run")},
    }
    result = train(validate_recipe(recipe))
    return result.run_dir, dev_path


def save_tiny(folder, tiny_model_dir, model_class, **config):
    """An untrained tiny model of some task, saved with the tokenizer: a plain model folder."""
    from transformers import AutoTokenizer

    torch.manual_seed(0)
    model_class(tiny_bert_config(**config)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    return folder


def one_by_one(model_dir, texts, max_length=16):
    """Logits of each text run alone (no padding, no sorting): the reference for batched prediction."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    with torch.no_grad():
        return [
            model(**tokenizer(t, truncation=True, max_length=max_length, return_tensors="pt")).logits[0]
            for t in texts
        ]


def test_batches_are_sorted_by_length_and_cover_every_example():
    batches = length_sorted_batches([3, 9, 1, 7, 5], 2)
    assert batches == [[1, 3], [4, 0], [2]]


def test_predict_keeps_input_order_and_names_labels(trained_run, tmp_path):
    run_dir, _ = trained_run
    source = write_rows(tmp_path / "texts.csv", [{"text": t, "id": i} for i, t in enumerate(TEXTS)])
    records = predict_file(run_dir, source, tmp_path / "out.jsonl", batch_size=2)
    written = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert written == records
    assert [r["text"] for r in records] == TEXTS
    expected = one_by_one(run_dir / "model", TEXTS)
    for record, logits in zip(records, expected):
        probabilities = torch.softmax(logits, -1).numpy()
        assert set(record["probabilities"]) == {"neg", "pos"}
        assert [record["probabilities"]["neg"], record["probabilities"]["pos"]] == pytest.approx(
            probabilities, abs=1e-5
        )
        assert record["label"] == ["neg", "pos"][int(probabilities.argmax())]
        assert record["score"] == pytest.approx(float(probabilities.max()), abs=1e-5)


def test_predict_reads_tsv_and_jsonl(trained_run, tmp_path):
    run_dir, _ = trained_run
    tsv = tmp_path / "texts.tsv"
    tsv.write_text('text\n"quoted" start\nplain\n')
    assert [r["text"] for r in predict_file(run_dir, tsv, tmp_path / "a.jsonl")] == [
        '"quoted" start',
        "plain",
    ]
    jsonl = tmp_path / "texts.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": t}) for t in TEXTS[:3]))
    assert len(predict_file(run_dir, jsonl, tmp_path / "b.jsonl")) == 3


def test_plain_model_folder_with_a_column_option(trained_run, tmp_path):
    run_dir, _ = trained_run
    source = write_rows(tmp_path / "s.csv", [{"sentence": t} for t in TEXTS])
    records = predict_file(run_dir / "model", source, tmp_path / "o.jsonl", columns={"text": "sentence"})
    assert [r["text"] for r in records] == TEXTS
    predictor = load_predictor(run_dir / "model")
    assert predictor.task == "classification" and predictor.label_names == ["neg", "pos"]


def test_column_position_reads_a_headerless_input_of_a_named_column_run(trained_run, tmp_path):
    run_dir, _ = trained_run  # trained on files with a header row
    source = tmp_path / "raw.tsv"
    source.write_text("".join(f"{i}\t{text}\n" for i, text in enumerate(TEXTS)), encoding="utf-8")
    records = predict_file(run_dir, source, tmp_path / "o.jsonl", columns={"text": 1})
    assert [r["text"] for r in records] == TEXTS  # the first row is an input, not a header


def test_cli_predict_and_its_errors(trained_run, tmp_path, capsys):
    run_dir, _ = trained_run
    source = write_rows(tmp_path / "texts.csv", [{"text": t} for t in TEXTS])
    assert main(["predict", str(run_dir), "--input", str(source), "--output", str(tmp_path / "p.jsonl")]) == 0
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == len(TEXTS)
    assert main(["predict", str(run_dir), "--input", str(tmp_path / "nope.csv"), "--output", "x.jsonl"]) == 2
    assert "input file not found" in capsys.readouterr().err
    assert main(["predict", str(tmp_path), "--input", str(source), "--output", "x.jsonl"]) == 2
    assert "neither a run folder" in capsys.readouterr().err
    bad = write_rows(tmp_path / "bad.csv", [{"review": t} for t in TEXTS])
    assert main(["predict", str(run_dir), "--input", str(bad), "--output", "x.jsonl"]) == 2
    assert "column 'text' not found" in capsys.readouterr().err


def test_evaluate_reproduces_the_validation_metrics_of_the_run(trained_run, tmp_path):
    run_dir, dev_path = trained_run
    summary = evaluate_file(run_dir, dev_path)
    final = json.loads((run_dir / "results.json").read_text())["final_metrics"]
    for name in ("accuracy", "f1", "f1_macro", "mcc"):
        assert summary["metrics"][name] == pytest.approx(final[name]), name
    folder = run_dir / "evaluations" / "dev"
    assert summary["output_dir"] == str(folder)
    for name in ("evaluation.json", "predictions.jsonl", "confusion_matrix.png"):
        assert (folder / name).is_file(), name
    assert json.loads((folder / "evaluation.json").read_text())["examples"] == 12


def test_evaluate_rejects_labels_the_model_does_not_know(trained_run, tmp_path):
    run_dir, _ = trained_run
    path = write_rows(tmp_path / "x.csv", [{"text": "fine", "label": "neutral"}])
    with pytest.raises(DataError, match=r"labels \['neutral'\] in .*x.csv never occur"):
        evaluate_file(run_dir, path, output_dir=tmp_path / "e")


def test_multi_label_model_folder(tmp_path, tiny_model_dir):
    from transformers import BertForSequenceClassification

    labels = {0: "politics", 1: "sports"}
    folder = save_tiny(
        tmp_path / "ml",
        tiny_model_dir,
        BertForSequenceClassification,
        problem_type="multi_label_classification",
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
        multi_label_threshold=0.5,
    )
    data = write_rows(
        tmp_path / "ml.csv",
        [
            {"text": "vote", "label": "politics"},
            {"text": "goal", "label": "sports,politics"},
            {"text": "tea", "label": ""},
        ],
    )
    records = predict_file(folder, data, tmp_path / "p.jsonl")
    for record in records:
        assert record["labels"] == [n for n, p in record["probabilities"].items() if p > 0.5]
    everything = predict_file(folder, data, tmp_path / "q.jsonl", threshold=1e-6)
    assert all(r["labels"] == ["politics", "sports"] for r in everything)
    summary = evaluate_file(folder, data, output_dir=tmp_path / "eval", threshold=0.5)
    assert set(summary["metrics"]) == {
        "f1_micro",
        "f1_macro",
        "precision_micro",
        "recall_micro",
        "subset_accuracy",
    }
    assert (tmp_path / "eval" / "per_label.png").is_file()


def test_regression_model_folder(tmp_path, tiny_model_dir):
    from transformers import BertForSequenceClassification

    folder = save_tiny(
        tmp_path / "reg",
        tiny_model_dir,
        BertForSequenceClassification,
        num_labels=1,
        problem_type="regression",
    )
    data = write_rows(tmp_path / "r.csv", [{"text": t, "label": float(i)} for i, t in enumerate(TEXTS)])
    records = predict_file(folder, data, tmp_path / "p.jsonl")
    assert all(isinstance(r["score"], float) for r in records)
    summary = evaluate_file(folder, data, output_dir=tmp_path / "eval")
    assert set(summary["metrics"]) == {"pearson", "spearman", "mse"}
    expected = np.mean((np.array([r["score"] for r in records]) - np.arange(5.0)) ** 2)
    assert summary["metrics"]["mse"] == pytest.approx(expected, rel=1e-5)
    assert (tmp_path / "eval" / "scatter.png").is_file()


def test_token_classification_model_folder(tmp_path, tiny_model_dir):
    from transformers import AutoTokenizer, BertForTokenClassification

    tags = {0: "B-LOC", 1: "B-PER", 2: "I-PER", 3: "O"}
    folder = save_tiny(
        tmp_path / "ner",
        tiny_model_dir,
        BertForTokenClassification,
        num_labels=4,
        id2label=tags,
        label2id={v: k for k, v in tags.items()},
    )
    untagged = tmp_path / "words.conll"
    untagged.write_text("Ada\nLovelace\nlived\nin\nLondon\n\nParis\n")
    records = predict_file(folder, untagged, tmp_path / "p.jsonl")
    assert [r["tokens"] for r in records] == [["Ada", "Lovelace", "lived", "in", "London"], ["Paris"]]
    # each word's tag is the arg-max at its first sub-word
    model = BertForTokenClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    encoded = tokenizer(records[0]["tokens"], is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**encoded).logits[0]
    firsts = [encoded.word_ids().index(i) for i in range(5)]
    assert records[0]["tags"] == [tags[int(logits[p].argmax())] for p in firsts]
    assert all(set(e) == {"type", "start", "end", "text"} for r in records for e in r["entities"])

    jsonl = tmp_path / "texts.jsonl"
    jsonl.write_text(json.dumps({"text": "Ada lived in Paris"}) + "\n")  # a string column is split on spaces
    assert predict_file(folder, jsonl, tmp_path / "q.jsonl")[0]["tokens"] == ["Ada", "lived", "in", "Paris"]

    tagged = tmp_path / "gold.conll"
    tagged.write_text("Ada B-PER\nLovelace I-PER\nlived O\n\nParis B-LOC\n")
    summary = evaluate_file(folder, tagged, output_dir=tmp_path / "eval")
    assert set(summary["metrics"]) == {"f1", "precision", "recall", "accuracy"}
    assert (tmp_path / "eval" / "confusion_matrix.png").is_file()


def test_left_padding_tokenizers_predict_like_one_example_at_a_time(tmp_path, tiny_model_dir):
    from datasets import Dataset
    from transformers import AutoTokenizer, BertForSequenceClassification, BertForTokenClassification

    tags = {0: "B-LOC", 1: "B-PER", 2: "I-PER", 3: "O"}
    ner = save_tiny(tmp_path / "ner", tiny_model_dir, BertForTokenClassification, num_labels=4, id2label=tags)
    classifier = save_tiny(tmp_path / "classifier", tiny_model_dir, BertForSequenceClassification)
    for folder in (ner, classifier):
        tokenizer = AutoTokenizer.from_pretrained(folder)
        tokenizer.padding_side = "left"
        tokenizer.save_pretrained(folder)

    predictor = load_predictor(ner, device="cpu")
    assert predictor.tokenizer.padding_side == "left"
    sentences = [["Ada", "Lovelace", "lived", "in", "London"], ["Paris"], ["in", "London"]]
    logits = infer(predictor, encode(predictor, Dataset.from_dict({"tokens": sentences})), progress=False)
    for words, got in zip(sentences, logits, strict=True):
        alone = predictor.tokenizer(words, is_split_into_words=True, return_tensors="pt")
        with torch.no_grad():
            expected = predictor.model(**alone).logits[0].numpy()
        assert got.shape == expected.shape and np.allclose(got, expected, atol=1e-5)

    predictor = load_predictor(classifier, device="cpu")
    logits = infer(predictor, encode(predictor, Dataset.from_dict({"text": TEXTS})), progress=False)
    assert np.allclose(np.stack(logits), torch.stack(one_by_one(classifier, TEXTS)).numpy(), atol=1e-5)


def test_token_classification_needs_a_fast_tokenizer_to_predict(tmp_path, tiny_model_dir, monkeypatch):
    from datasets import Dataset
    from transformers import BertForTokenClassification

    folder = save_tiny(tmp_path / "ner", tiny_model_dir, BertForTokenClassification, num_labels=3)
    predictor = load_predictor(folder, device="cpu")
    monkeypatch.setattr(type(predictor.tokenizer), "is_fast", property(lambda self: False))
    with pytest.raises(DataError, match=r"ner \(its tokenizer\): token_classification needs a fast \(Rust\)"):
        encode(predictor, Dataset.from_dict({"tokens": [["Ada", "lived"]]}))


def test_adapter_folder_predicts_like_the_adapted_model(tmp_path, tiny_model_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from finetune.model.peft import add_adapters, save_adapted
    from finetune.recipe.peft import PeftSection

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    model.config.id2label, model.config.label2id = {0: "neg", 1: "pos"}, {"neg": 0, "pos": 1}
    wrapper = add_adapters(model, PeftSection(method="lora"), "classification", [])
    with torch.no_grad():  # move the adapters away from their zero start
        for name, parameter in model.named_parameters():
            if ".lora_B." in name:
                parameter.normal_(0, 0.5)
    save_adapted(wrapper, tmp_path / "adapter", "adapter", AutoTokenizer.from_pretrained(tiny_model_dir))
    source = write_rows(tmp_path / "t.csv", [{"text": t} for t in TEXTS])
    records = predict_file(tmp_path / "adapter", source, tmp_path / "p.jsonl")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model.eval()
    with torch.no_grad():
        for record, text in zip(records, TEXTS):
            logits = model(**tokenizer(text, truncation=True, max_length=512, return_tensors="pt")).logits[0]
            assert record["probabilities"]["pos"] == pytest.approx(
                float(torch.softmax(logits, -1)[1]), abs=1e-5
            )


@pytest.mark.integration
def test_minilm_demo_run_predicts_and_evaluates_like_training(tmp_path):
    """The real default model: a few steps on the demo data, then predict and evaluate the run folder."""
    import csv

    from finetune.data.files import builtin_data_dir
    from finetune.recipe import load_recipe

    overrides = [
        "data.max_train_samples=32",
        "data.max_eval_samples=32",
        "training.max_steps=4",
        "evaluation.every=2",
        f"output.dir={tmp_path / 'run'}",
    ]
    run_dir = train(load_recipe("demo", overrides)).run_dir
    with (builtin_data_dir("demo") / "dev.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))[:32]  # the validation rows the run evaluated
    dev = write_rows(tmp_path / "dev32.csv", rows)
    summary = evaluate_file(run_dir, dev)
    final = json.loads((run_dir / "results.json").read_text())["final_metrics"]
    assert summary["metrics"]["accuracy"] == pytest.approx(final["accuracy"])
    assert summary["metrics"]["f1"] == pytest.approx(final["f1"])
    records = predict_file(run_dir, dev, tmp_path / "p.jsonl")
    assert [r["text"] for r in records] == [r["text"] for r in rows]
    assert {r["label"] for r in records} <= {"negative", "positive"}
    assert "## Results" in (run_dir / "report.md").read_text()


def predict_cli(run_dir, source, output, *flags):
    return main(["predict", str(run_dir), "--input", str(source), "--output", str(output), *flags])


def test_predict_never_writes_over_its_input_file(trained_run, tmp_path, capsys):
    run_dir, _ = trained_run
    source = tmp_path / "texts.tsv"
    source.write_text("text\ngreat film\na mess\n")
    before = source.read_bytes()
    capsys.readouterr()
    for output, flags in ((source, []), (tmp_path / "sub" / ".." / "texts.tsv", ["--overwrite"])):
        assert predict_cli(run_dir, source, output, *flags) == 2
        err = capsys.readouterr().err
        assert f"--output {output} is the input file {source}" in err and "Traceback" not in err
        assert source.read_bytes() == before


def test_predict_refuses_an_existing_output_unless_overwrite(trained_run, tmp_path, capsys):
    run_dir, _ = trained_run
    source = write_rows(tmp_path / "texts.csv", [{"text": t} for t in TEXTS])
    output = tmp_path / "p.jsonl"
    output.write_text("earlier predictions\n")
    capsys.readouterr()
    assert predict_cli(run_dir, source, output) == 2
    err = capsys.readouterr().err
    assert f"{output} already exists; pass --overwrite to replace it, or choose another --output" in err
    assert output.read_text() == "earlier predictions\n"
    assert predict_cli(run_dir, source, output, "--overwrite") == 0
    assert len(output.read_text().splitlines()) == len(TEXTS)
    assert predict_cli(run_dir, source, tmp_path, "--overwrite") == 2
    assert f"--output {tmp_path} is a folder; give the path of a file to write" in capsys.readouterr().err


def test_evaluate_refuses_an_output_dir_with_results_unless_overwrite(trained_run, tmp_path, capsys):
    run_dir, dev_path = trained_run
    folder = tmp_path / "eval"
    args = ["evaluate", str(run_dir), "--data", str(dev_path), "--output-dir", str(folder)]
    assert main(args) == 0
    (folder / "evaluation.json").write_text("{}")  # marks the first results
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{folder} already holds the results of an evaluation" in err and "--overwrite" in err
    assert (folder / "evaluation.json").read_text() == "{}"
    assert main([*args, "--overwrite"]) == 0
    assert json.loads((folder / "evaluation.json").read_text())["examples"] == 12


def test_evaluate_never_writes_over_its_data_file(trained_run, tmp_path, capsys):
    run_dir, _ = trained_run
    data = tmp_path / "predictions.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in sentiment_rows(1)))
    before = data.read_bytes()
    capsys.readouterr()
    args = ["evaluate", str(run_dir), "--data", str(data), "--output-dir", str(tmp_path), "--overwrite"]
    assert main(args) == 2
    assert f"which is the data file {data}" in capsys.readouterr().err
    assert data.read_bytes() == before
