"""Integration: the real MiniLM default on the demo data and on GLUE (skipped without the data)."""

import pytest
from conftest import GLUE, needs_glue

from finetune.recipe import load_recipe
from finetune.training.run import train

pytestmark = pytest.mark.integration


def test_minilm_learns_the_demo_set(tmp_path):
    recipe = load_recipe(
        "demo", ["training.epochs=3", f"output.dir={tmp_path / 'run'}", "output.plots=false"]
    )
    result = train(recipe)
    best = result.results["final_metrics"]["accuracy"]
    assert best >= 0.75, result.results
    assert best > result.results["initial_metrics"]["accuracy"] + 0.2


@needs_glue
def test_mrpc_sentence_pairs(tmp_path):
    recipe = load_recipe(
        "glue-mrpc",
        [
            f"data.dir={GLUE}",
            "data.max_train_samples=384",
            "data.max_eval_samples=128",
            "training.max_steps=24",
            "evaluation.every=12",
            "optimizer.lr=5e-5",
            f"output.dir={tmp_path / 'run'}",
        ],
    )
    result = train(recipe).results
    assert result["steps"] == 24 and result["metric"] == "f1"
    assert result["labels"] == ["0", "1"]
    assert result["final_metrics"]["f1"] > 0.6  # MRPC is 68% positive: anything that learns beats 0


@needs_glue
def test_stsb_regression(tmp_path):
    recipe = load_recipe(
        "glue-stsb",
        [
            f"data.dir={GLUE}",
            "data.max_train_samples=1024",
            "data.max_eval_samples=200",
            "training.max_steps=64",
            "evaluation.every=32",
            "optimizer.lr=1e-4",
            f"output.dir={tmp_path / 'run'}",
        ],
    )
    result = train(recipe).results
    assert result["task"] == "regression" and result["labels"] is None
    assert result["final_metrics"]["pearson"] > 0.4  # seen: 0.56 after 64 steps
    assert result["final_metrics"]["mse"] < result["initial_metrics"]["mse"] / 2
