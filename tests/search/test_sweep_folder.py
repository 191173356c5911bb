"""Sweep folders: a stopped sweep resumes where it stopped, a folder holds one sweep only, and a
folder that is not a sweep is never touched."""

import pytest
from sweeps import read_table, scripted_train, sweep_spec

from finetune.cli import main
from finetune.search.sweep import run_sweep
from finetune.search.sweep_file import SweepError
from finetune.search.sweep_folder import reopen_sweep, start_sweep

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_stopped_grid_sweep_resumes_without_redoing_finished_trials(trial_recipe, tmp_path, monkeypatch):
    import finetune.training.run

    spec = sweep_spec(
        method="grid", pruning={"enabled": False}, space={"optimizer.lr": [1e-4, 1e-3, 3e-3, 1e-2]}
    )
    folder, trained = tmp_path / "sweep", []
    monkeypatch.setattr(
        finetune.training.run, "train", scripted_train([0.5, 0.6, KeyboardInterrupt()], trained)
    )
    with pytest.raises(KeyboardInterrupt):
        run_sweep(start_sweep(trial_recipe, spec, folder, "s.yaml"))
    assert trained == [1e-4, 1e-3, 3e-3]
    assert [r["state"] for r in read_table(folder)] == ["complete", "complete", "fail"]

    resumed = []
    monkeypatch.setattr(finetune.training.run, "train", scripted_train([0.4, 0.3], resumed))
    assert main(["sweep", "--resume", str(folder)]) == 0
    assert sorted(resumed) == [3e-3, 1e-2]  # the interrupted one again, and the one never started
    rows = read_table(folder)
    done = sorted(float(r["optimizer.lr"]) for r in rows if r["state"] == "complete")
    assert done == [1e-4, 1e-3, 3e-3, 1e-2]

    resumed.clear()  # a finished sweep has nothing left to run
    assert main(["sweep", "--resume", str(folder)]) == 0
    assert resumed == []


def test_tpe_sweep_resumes_to_its_budget(trial_recipe, tmp_path, monkeypatch):
    import finetune.training.run

    spec = sweep_spec(method="tpe", trials=3, space={"optimizer.lr": {"log_uniform": [1e-4, 1e-2]}})
    folder, seen = tmp_path / "sweep", []
    monkeypatch.setattr(finetune.training.run, "train", scripted_train([0.5, KeyboardInterrupt()], seen))
    with pytest.raises(KeyboardInterrupt):
        run_sweep(start_sweep(trial_recipe, spec, folder, "s.yaml"))
    interrupted = seen[1]

    bigger = sweep_spec(method="tpe", trials=4, space=spec.model_dump()["space"])
    with pytest.raises(SweepError, match="different recipe or sweep file .*sweep trials"):
        start_sweep(trial_recipe, bigger, folder, "s.yaml")  # the same folder must hold the same sweep
    with pytest.raises(SweepError, match="different recipe or sweep file .*optimizer.weight_decay"):
        other = trial_recipe.model_copy(
            update={"optimizer": trial_recipe.optimizer.model_copy(update={"weight_decay": 0.2})}
        )
        start_sweep(other, spec, folder, "s.yaml")

    seen.clear()  # the same command again continues: the interrupted values first, then a new draw
    monkeypatch.setattr(finetune.training.run, "train", scripted_train([0.4, 0.3], seen))
    run_sweep(start_sweep(trial_recipe, spec, folder, "s.yaml"))
    assert len(seen) == 2 and seen[0] == interrupted and seen[1] != interrupted
    assert [r["state"] for r in read_table(folder)] == ["complete"] * 3 + ["fail"]

    seen.clear()
    run_sweep(start_sweep(trial_recipe, spec, folder, "s.yaml"))  # the budget is used: nothing to do
    assert seen == []


def test_existing_folder_that_is_not_a_sweep_is_never_touched(trial_recipe, tmp_path):
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep")
    spec = sweep_spec(method="grid", space={"optimizer.lr": [1e-3]})
    with pytest.raises(SweepError, match="exists and is not a sweep folder"):
        start_sweep(trial_recipe, spec, folder, "s.yaml")
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    with pytest.raises(SweepError, match="not a sweep folder"):
        reopen_sweep(folder)
