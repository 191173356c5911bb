"""A sweep's results: every trial in the table, best first; each an ordinary run folder; best.yaml
is the winner's recipe; the plots and the markdown table."""

import json

import pytest
from sweeps import read_table, sweep_spec

from finetune.recipe import load_recipe
from finetune.search.sweep import run_sweep
from finetune.search.sweep_folder import start_sweep

pytestmark = pytest.mark.usefixtures("one_thread")


def test_grid_sweep_runs_every_combination_and_writes_best_yaml(trial_recipe, tmp_path):
    spec = sweep_spec(
        method="grid",
        pruning={"enabled": False},
        space={"optimizer.lr": [1e-4, 3e-3], "freeze.layers": [[], [0, 1]]},
    )
    folder = tmp_path / "sweep"
    summary = run_sweep(start_sweep(trial_recipe, spec, folder, "s.yaml"))

    rows = read_table(folder)
    assert len(rows) == 4 and {r["state"] for r in rows} == {"complete"}
    combos = {(float(r["optimizer.lr"]), r["freeze.layers"]) for r in rows}
    assert combos == {(lr, layers) for lr in (1e-4, 3e-3) for layers in ("[]", "[0, 1]")}
    losses = [float(r["loss"]) for r in rows]
    assert losses == sorted(losses)  # validation loss: smaller is better, best first
    for row in rows:  # every trial is an ordinary run folder
        run = folder / row["run_dir"]
        results = json.loads((run / "results.json").read_text())
        assert results["best"]["value"] == pytest.approx(float(row["loss"]))
        trial = load_recipe(run / "recipe.yaml")
        assert trial.optimizer.lr == float(row["optimizer.lr"])
        assert trial.freeze.layers == json.loads(row["freeze.layers"])
    for name in ("results.md", "sweep.png", "curves.png", "study.db", "recipe.yaml", "sweep.yaml"):
        assert (folder / name).is_file(), name

    best = load_recipe(folder / "best.yaml")
    winner = load_recipe(folder / rows[0]["run_dir"] / "recipe.yaml")
    assert best.output.dir is None
    assert best == winner.model_copy(update={"output": winner.output.model_copy(update={"dir": None})})
    assert summary["best"]["trial"] == int(rows[0]["trial"])
    markdown = (folder / "results.md").read_text().splitlines()
    assert markdown[0] == "| trial | state | loss | optimizer.lr | freeze.layers | steps | run_dir |"
    assert len(markdown) == 2 + 4
