"""`finetune train` (finetune/commands/training.py): a run that cannot start exits 2 before training."""

from finetune.cli import main


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
