"""The `finetune` command: clear errors with a non-zero exit, fast start-up."""

import subprocess
import sys

import yaml

from finetune.cli import main


def test_bad_recipe_prints_one_message_and_exits_2(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"optimizer": {"lrr": 1e-5}}))
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("finetune: error: recipe is invalid")
    assert "did you mean 'lr'?" in err and "Traceback" not in err


def test_missing_data_file_exits_2_before_training(tmp_path, capsys):
    code = main(["train", "base", "data.train=missing.csv", f"output.dir={tmp_path / 'run'}"])
    assert code == 2
    assert "data.train: file not found" in capsys.readouterr().err


def test_latin1_data_file_exits_2_naming_file_and_line(tmp_path, capsys):
    data = tmp_path / "raw.csv"
    data.write_bytes("good,pos\ncaf\xe9,neg\n".encode("latin-1"))
    run = tmp_path / "run"
    args = ["data.header=false", "data.text=0", "data.label=1", f"output.dir={run}"]
    assert main(["train", "base", f"data.train={data}", *args]) == 2
    err = capsys.readouterr().err
    assert f"{data} is not valid utf-8 text (data.encoding): line 2, column 4" in err
    assert "set data.encoding: latin-1" in err and "Traceback" not in err
    assert not run.exists()  # and the same command can run again


def test_training_file_of_empty_texts_exits_2(tmp_path, capsys):
    data = tmp_path / "blank.csv"
    data.write_text("text,label\n,pos\n  ,neg\n,pos\n", encoding="utf-8")
    assert main(["train", "base", f"data.train={data}", f"output.dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert f"data.text: 3 of 3 texts in column 'text' of {data} are empty or whitespace-only" in err


def test_validate_prints_the_resolved_recipe(capsys):
    assert main(["validate", "demo", "training.epochs=1"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["training"]["epochs"] == 1
    assert resolved["data"]["dir"] == "builtin:demo"


def test_help_does_not_import_torch():
    code = "import sys; from finetune.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_explain_shows_trainable_blocks(tiny_model_dir, capsys, tmp_path):
    args = ["explain", "base", f"model.name={tiny_model_dir}", "freeze.embeddings=true", "freeze.layers=[0]"]
    assert main([*args, "--plot", str(tmp_path / "explain.png")]) == 0
    out = capsys.readouterr().out
    assert "embeddings" in out and "frozen" in out
    assert "layer.1" in out and "trainable" in out
