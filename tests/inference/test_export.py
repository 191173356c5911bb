"""`finetune export --format onnx`: a folder onnxruntime runs alone, whose logits match PyTorch's."""

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import sentiment_rows, tiny_bert_config, write_rows

from finetune.cli import main
from finetune.errors import FinetuneError
from finetune.inference.export import export_run

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

TEXTS = ["great film", "I loved it, truly wonderful and warm, a delight from start to end", "a mess"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_model_dir):
    """A short tiny-model run whose validation is held out of train, exported with int8."""
    from finetune.recipe import validate_recipe
    from finetune.training.run import train

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("export")
    recipe = {
        "name": "tiny",
        "model": {"name": str(tiny_model_dir)},
        "data": {"train": str(write_rows(folder / "train.csv", sentiment_rows(4))), "max_length": 16},
        "optimizer": {"lr": 1e-3},
        "training": {"epochs": 1, "batch_size": 8, "seed": 0},
        "output": {"dir": str(folder / "run"), "plots": False},
    }
    run_dir = train(validate_recipe(recipe)).run_dir
    summary = export_run(run_dir, quantize="int8")
    return run_dir, run_dir / "export-onnx", summary


def torch_logits(model_dir, texts, **kwargs):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, **kwargs).eval()
    encoded = AutoTokenizer.from_pretrained(model_dir)(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**encoded).logits.numpy()


def onnx_logits(folder, texts, file="model.onnx"):
    """As a user runs the folder: its own tokenizer, onnxruntime, no finetune and no torch model."""
    from transformers import AutoTokenizer

    session = ort.InferenceSession(str(folder / file), providers=["CPUExecutionProvider"])
    encoded = AutoTokenizer.from_pretrained(folder)(texts, padding=True, return_tensors="np")
    feed = {i.name: encoded[i.name] for i in session.get_inputs()}
    return session.run(["logits"], feed)[0]


@pytest.mark.parametrize("texts", [TEXTS[:1], TEXTS], ids=["batch-1-short", "batch-3-padded"])
def test_onnx_logits_match_torch_at_other_batch_sizes_and_lengths(exported, texts):
    run_dir, folder, _ = exported
    got, expected = onnx_logits(folder, texts), torch_logits(run_dir / "model", texts)
    assert got.shape == expected.shape == (len(texts), 2)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_graph_has_dynamic_batch_and_sequence_axes(exported):
    _, folder, summary = exported
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    inputs = {i.name: i.shape for i in session.get_inputs()}
    assert inputs == {
        name: ["batch", "sequence"] for name in ("input_ids", "attention_mask", "token_type_ids")
    }
    assert session.get_outputs()[0].name == "logits"
    assert summary["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]


def test_folder_holds_the_tokenizer_and_the_label_names(exported):
    from transformers import AutoConfig, AutoTokenizer

    run_dir, folder, _ = exported
    assert AutoConfig.from_pretrained(folder).id2label == {0: "neg", 1: "pos"}
    info = json.loads((folder / "export.json").read_text())
    assert info["label_names"] == ["neg", "pos"] and info["task"] == "classification"
    assert info["max_length"] == 16 and info["files"] == ["model.onnx", "model.int8.onnx"]
    run_tokenizer = AutoTokenizer.from_pretrained(run_dir / "model")
    assert AutoTokenizer.from_pretrained(folder)(TEXTS)["input_ids"] == run_tokenizer(TEXTS)["input_ids"]


def test_parity_is_checked_on_the_held_out_validation_texts(exported):
    _, folder, _ = exported
    parity = json.loads((folder / "parity.json").read_text())
    assert parity["passed"] is True
    assert "10% of" in parity["texts_from"] and "(seed 0)" in parity["texts_from"]
    fp32, int8 = parity["checks"]
    assert fp32["texts"] == int8["texts"] == 5  # 10% of 48 rows, held out as training held them out
    assert fp32["gate"] == "max_abs_diff" and fp32["max_abs_diff"] <= 1e-3 and fp32["agreement"] == 1.0
    assert int8["gate"] == "agreement" and int8["limit"] == 0.99 and int8["agreement"] >= 0.99


def test_int8_file_is_quantized_and_close(exported):
    import onnx

    run_dir, folder, _ = exported
    ops = {node.op_type for node in onnx.load(str(folder / "model.int8.onnx")).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops
    got, expected = onnx_logits(folder, TEXTS, "model.int8.onnx"), torch_logits(run_dir / "model", TEXTS)
    assert (got.argmax(-1) == expected.argmax(-1)).all()
    assert 0 < np.abs(got - expected).max() < 0.05  # int8 moves the logits, a little


def test_cli_fails_loudly_when_the_graph_does_not_match(exported, tmp_path, monkeypatch, capsys):
    """A graph that adds 0.01 to the first logit: the command exits 2 and parity.json says why."""
    import onnx
    from onnx import helper, numpy_helper

    import finetune.inference.export as export

    real = export.export_graph

    def perturbed(predictor, names, path):
        opset = real(predictor, names, path)
        model = onnx.load(str(path))
        last = next(node for node in model.graph.node if "logits" in node.output)
        last.output[list(last.output).index("logits")] = "true_logits"
        shift = numpy_helper.from_array(np.array([0.01, 0.0], dtype=np.float32), "shift")
        model.graph.initializer.append(shift)
        model.graph.node.append(helper.make_node("Add", ["true_logits", "shift"], ["logits"]))
        onnx.save(model, str(path))
        return opset

    monkeypatch.setattr(export, "export_graph", perturbed)
    run_dir, _, _ = exported
    assert main(["export", str(run_dir), "--output", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "does not match the PyTorch model" in error and "tolerance 0.001: FAILED" in error
    parity = json.loads((tmp_path / "out" / "parity.json").read_text())
    assert parity["passed"] is False
    assert parity["checks"][0]["max_abs_diff"] == pytest.approx(0.01, rel=1e-3)


def test_cli_overwrites_an_earlier_export_and_its_int8_file_only_when_asked(exported, tmp_path, capsys):
    run_dir, folder, _ = exported
    target = shutil.copytree(folder, tmp_path / "earlier")
    assert main(["export", str(run_dir), "--output", str(target)]) == 2
    assert "already exists and is not empty; pass --overwrite" in capsys.readouterr().err
    assert main(["export", str(run_dir), "--format", "onnx", "--output", str(target), "--overwrite"]) == 0
    out = capsys.readouterr().out
    assert "exported model.onnx (opset" in out and "dynamic batch and sequence" in out
    assert "parity on 5 texts" in out and "tolerance 0.001: ok" in out
    assert not (target / "model.int8.onnx").exists()
    assert [c["file"] for c in json.loads((target / "parity.json").read_text())["checks"]] == ["model.onnx"]


def test_bad_input_gets_a_clear_error(exported, tmp_path, capsys, monkeypatch):
    run_dir, _, _ = exported
    assert main(["export", str(tmp_path / "nowhere")]) == 2
    assert "neither a run folder" in capsys.readouterr().err
    no_model = tmp_path / "no-model"
    no_model.mkdir()
    (no_model / "recipe.yaml").write_text("name: x\n")
    assert main(["export", str(no_model)]) == 2
    assert "saved no model" in capsys.readouterr().err
    assert main(["export", str(run_dir), "--output", str(run_dir / "model"), "--overwrite"]) == 2
    assert "is the folder being exported" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", str(run_dir), "--format", "tflite"])
    assert "invalid choice: 'tflite'" in capsys.readouterr().err
    with pytest.raises(FinetuneError, match="unknown export format"):
        export_run(run_dir, tmp_path / "x", fmt="tflite")
    with pytest.raises(FinetuneError, match="--min-agreement 99"):
        export_run(run_dir, tmp_path / "x", min_agreement=99)


def test_missing_onnx_says_how_to_install_it(exported, tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name)
    )
    run_dir, _, _ = exported
    assert main(["export", str(run_dir), "--output", str(tmp_path / "out")]) == 2
    assert (
        "needs onnxruntime, which are not installed: pip install 'finetune[onnx]'" in capsys.readouterr().err
    )
    assert not (tmp_path / "out").exists()  # refused before anything was written


def save_tiny(folder, tiny_model_dir, model_class, **config):
    from transformers import AutoTokenizer

    torch.manual_seed(0)
    model_class(tiny_bert_config(**config)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    return folder


def test_a_model_folder_needs_texts_to_check_on(tmp_path, tiny_model_dir, capsys):
    from transformers import BertForSequenceClassification

    model = save_tiny(tmp_path / "m", tiny_model_dir, BertForSequenceClassification)
    assert main(["export", str(model), "--output", str(tmp_path / "out")]) == 2
    assert "pass --data FILE" in capsys.readouterr().err


@pytest.mark.parametrize("task", ["regression", "multi_label", "token_classification"])
def test_other_tasks_export_with_matching_logits(task, tmp_path, tiny_model_dir):
    from transformers import BertForSequenceClassification, BertForTokenClassification

    config = {
        "regression": dict(num_labels=1, problem_type="regression"),
        "multi_label": dict(num_labels=3, problem_type="multi_label_classification"),
        "token_classification": dict(num_labels=4),
    }[task]
    words = task == "token_classification"
    model_class = BertForTokenClassification if words else BertForSequenceClassification
    model = save_tiny(tmp_path / "m", tiny_model_dir, model_class, **config)
    if task == "regression":  # weights saved in bf16: the graph is fp32 all the same
        model_class.from_pretrained(model).to(torch.bfloat16).save_pretrained(model)
    if words:
        lines = ["\n".join(f"{w} O" for w in t.replace(",", "").split()) for t in TEXTS]
        data = tmp_path / "texts.conll"
        data.write_text("\n\n".join(lines) + "\n")
    else:
        data = write_rows(tmp_path / "texts.csv", [{"text": t} for t in TEXTS])
    summary = export_run(model, tmp_path / "out", quantize="int8", data=data)
    assert summary["task"] == task and summary["passed"]
    fp32, int8 = summary["parity"]
    assert fp32.texts == 3 and fp32.max_abs_diff <= 1e-4
    assert fp32.compared == (sum(len(t.replace(",", "").split()) for t in TEXTS) if words else 3)
    got = onnx_logits(tmp_path / "out", TEXTS[:2])
    assert got.shape[0] == 2 and got.shape[-1] == config["num_labels"] and got.dtype == np.float32
