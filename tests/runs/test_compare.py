"""`finetune compare`: the recipe keys that differ, the metrics, one figure of validation curves."""

import pytest
from conftest import sentiment_rows, write_rows

from finetune.cli import main
from finetune.errors import FinetuneError
from finetune.recipe import validate_recipe
from finetune.runs.compare import compare_runs, differing_keys
from finetune.training.run import train


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny_model_dir):
    folder = tmp_path_factory.mktemp("compare")
    train_path = write_rows(folder / "train.csv", sentiment_rows(3))
    dev_path = write_rows(folder / "dev.csv", sentiment_rows(1))
    runs = []
    for name, lr in (("slow", 1e-4), ("fast", 1e-3)):
        recipe = {
            "name": name,
            "model": {"name": str(tiny_model_dir)},
            "data": {"train": str(train_path), "validation": str(dev_path), "max_length": 16},
            "optimizer": {"lr": lr},
            "training": {"epochs": 2, "batch_size": 12, "seed": 0},
            "output": {"dir": str(folder / name)},
        }
        runs.append(train(validate_recipe(recipe)).run_dir)
    return runs


def test_differing_keys_ignore_shared_and_bookkeeping_keys():
    first = {
        "name": "a",
        "optimizer": {"lr": 1e-4, "eps": 1e-8},
        "output": {"dir": "x"},
        "freeze": {"layers": []},
    }
    second = {
        "name": "b",
        "optimizer": {"lr": 1e-3, "eps": 1e-8},
        "output": {"dir": "y"},
        "freeze": {"layers": [0]},
    }
    assert differing_keys([first, second]) == ["freeze.layers", "optimizer.lr"]  # in recipe order


def test_table_shows_what_differs_and_how_each_run_scored(two_runs, tmp_path):
    figure = tmp_path / "compare.png"
    text = compare_runs(two_runs, figure)
    lines = text.splitlines()
    header = lines[0].split()
    assert header[:2] == ["run", "optimizer.lr"]
    assert "data.train" not in header and "output.dir" not in header and "name" not in header
    assert {"watched", "best", "accuracy", "f1_macro", "steps"} <= set(header)
    assert lines[2].split()[:3] == ["slow", "0.0001", "accuracy"]
    assert lines[3].split()[:3] == ["fast", "0.001", "accuracy"]
    assert figure.is_file() and figure.stat().st_size > 10_000


def test_compare_command(two_runs, tmp_path, capsys):
    figure = tmp_path / "c.png"
    assert main(["compare", *map(str, two_runs), "--plot", str(figure)]) == 0
    out = capsys.readouterr().out
    assert "optimizer.lr" in out and f"wrote {figure}" in out and figure.is_file()
    with pytest.raises(FinetuneError, match="at least two run folders"):
        compare_runs(two_runs[:1])
