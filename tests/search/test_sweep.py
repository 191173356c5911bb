"""Running a sweep: a crash while a pruned trial's results are written, failed and interrupted
trials, a broken setup that stops the sweep, the command line, and a killed worker's trial."""

import errno
import json
from pathlib import Path

import pytest
import yaml
from sweeps import read_table, scripted_train, sweep_spec

from finetune.cli import main
from finetune.errors import FinetuneError
from finetune.recipe import load_recipe
from finetune.search.sweep import run_sweep
from finetune.search.sweep_file import load_sweep_file
from finetune.search.sweep_folder import reopen_sweep, start_sweep

pytestmark = pytest.mark.usefixtures("one_thread")


class _FullDiskHalfWay:
    """A file handle that writes half of a text mentioning a pruned trial, then finds the disk full."""

    def __init__(self, handle):
        self.handle = handle

    def write(self, text):
        if "pruned by the sweep" not in text:
            return self.handle.write(text)
        self.handle.write(text[: len(text) // 2])
        self.handle.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()

    def __getattr__(self, name):
        return getattr(self.handle, name)


def test_a_crash_while_a_pruned_trials_results_are_written_leaves_the_previous_file(
    trial_recipe, tmp_path, monkeypatch
):
    real_open = Path.open

    def open_results(self, mode="r", *args, **kwargs):
        handle = real_open(self, mode, *args, **kwargs)
        return _FullDiskHalfWay(handle) if "w" in mode and "results.json" in self.name else handle

    monkeypatch.setattr(Path, "open", open_results)
    spec = sweep_spec(
        method="grid",
        pruning={"startup_trials": 2, "warmup_evaluations": 0},
        space={"optimizer.lr": [1e-3, 2e-3, 0.9]},  # the third is pruned (see the test above)
    )
    folder = tmp_path / "sweep"
    with pytest.raises(OSError, match="No space left"):
        run_sweep(start_sweep(trial_recipe, spec, folder, "s.yaml"))
    pruned = folder / "trial-002"
    results = json.loads((pruned / "results.json").read_text())  # what the run itself wrote, whole
    assert results["steps"] == 2 and not str(results.get("stop_reason")).startswith("pruned by the sweep")
    assert [p.name for p in pruned.iterdir() if "results" in p.name] == ["results.json"]


def test_sweep_command_line(trial_recipe, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(trial_recipe.to_yaml_dict()))
    sweep_file = tmp_path / "lr.sweep.yaml"
    sweep_file.write_text(yaml.safe_dump({"method": "grid", "space": {"optimizer.lr": [1e-3]}}))
    out = tmp_path / "sweep"
    assert main(["sweep", str(recipe), str(sweep_file), "training.max_steps=2", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "best: trial 0" in printed and f"finetune train {out / 'best.yaml'}" in printed
    assert load_recipe(out / "best.yaml").training.max_steps == 2  # overrides reach every trial
    assert main(["sweep", "--resume", str(out), str(recipe)]) == 2
    assert "not both" in capsys.readouterr().err
    with pytest.raises(FinetuneError):
        load_sweep_file(tmp_path / "missing.sweep.yaml")


def test_a_failed_trial_stays_failed_and_a_signal_stops_the_sweep(trial_recipe, tmp_path, monkeypatch):
    import finetune.training.run
    from finetune.training.guards import RunInterrupted, TrainingDiverged

    spec = sweep_spec(method="grid", space={"optimizer.lr": [1e-4, 1e-3, 3e-3, 1e-2]})
    folder, seen = tmp_path / "sweep", []
    outcomes = [0.5, TrainingDiverged("training loss is nan"), RunInterrupted("SIGINT received", 2)]
    monkeypatch.setattr(finetune.training.run, "train", scripted_train(outcomes, seen))
    with pytest.raises(KeyboardInterrupt):
        run_sweep(start_sweep(trial_recipe, spec, folder, "s.yaml"))
    rows = read_table(folder)
    assert [(r["state"], r["optimizer.lr"]) for r in rows] == [
        ("complete", "0.0001"),
        ("fail", "0.001"),
        ("fail", "0.003"),
    ]
    assert rows[1]["error"] == "training loss is nan" and rows[2]["error"] == ""

    seen.clear()
    monkeypatch.setattr(finetune.training.run, "train", scripted_train([0.6, 0.3], seen))
    run_sweep(reopen_sweep(folder))
    assert seen == [1e-2, 3e-3]  # the one still queued, then the interrupted one again; not the failed one
    rows = read_table(folder)
    assert [(r["state"], r["optimizer.lr"], r["loss"]) for r in rows] == [
        ("complete", "0.003", "0.3"),  # validation loss: smaller is better
        ("complete", "0.0001", "0.5"),
        ("complete", "0.01", "0.6"),
        ("fail", "0.001", ""),
        ("fail", "0.003", ""),
    ]
    assert load_recipe(folder / "best.yaml").optimizer.lr == 3e-3


def test_a_diverged_first_trial_is_a_result_but_a_broken_setup_stops_the_sweep(
    trial_recipe, tmp_path, monkeypatch
):
    import finetune.training.run
    from finetune.errors import DataError
    from finetune.training.guards import TrainingDiverged

    spec = sweep_spec(method="grid", space={"optimizer.lr": [0.5, 1e-3]})
    seen = []
    monkeypatch.setattr(
        finetune.training.run, "train", scripted_train([TrainingDiverged("loss is inf"), 0.4], seen)
    )
    run_sweep(start_sweep(trial_recipe, spec, tmp_path / "a", "s.yaml"))
    assert [(r["state"], r["error"]) for r in read_table(tmp_path / "a")] == [
        ("complete", ""),
        ("fail", "loss is inf"),
    ]

    monkeypatch.setattr(
        finetune.training.run, "train", scripted_train([DataError("data.train: file not found")], seen)
    )
    with pytest.raises(DataError, match="file not found"):  # nothing worked yet: say why and stop
        run_sweep(start_sweep(trial_recipe, spec, tmp_path / "b", "s.yaml"))


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_killed_workers_trial_is_reported_until_the_grace_period_fails_it(
    trial_recipe, tmp_path, monkeypatch, capsys
):
    import time

    import finetune.search.sweep_study
    import finetune.training.run
    from finetune.search.sweep_study import enqueue_pending, open_study, suggest

    spec = sweep_spec(method="grid", pruning={"enabled": False}, space={"optimizer.lr": [1e-4, 1e-3]})
    folder = tmp_path / "sweep"
    sweep = start_sweep(trial_recipe, spec, folder, "s.yaml")
    study = open_study(folder, spec, greater_is_better=False)  # a worker that takes lr=1e-4 ...
    enqueue_pending(study, spec)
    killed = study.ask()
    suggest(killed, "optimizer.lr", spec.space["optimizer.lr"])
    study._storage.record_heartbeat(killed._trial_id)  # ... and is killed (SIGKILL) mid-trial

    seen = []
    monkeypatch.setattr(finetune.training.run, "train", scripted_train([0.4], seen))
    run_sweep(sweep)  # resumed at once: the trial's heartbeat is fresh, it may be another worker's
    assert seen == [1e-3]
    out = capsys.readouterr().out
    assert "1 marked running" in out
    assert "trial 0 (optimizer.lr=0.0001) is marked running; this session did not run it" in out
    assert f"`finetune sweep --resume {folder}` started after that runs it again" in out
    assert "180 s" in out

    run_sweep(reopen_sweep(folder))  # still within the grace period: nothing to run, but not "done"
    out = capsys.readouterr().out
    assert "nothing left to run\n" in out and "used its budget" not in out and "trial 0 (" in out

    monkeypatch.setattr(finetune.search.sweep_study, "GRACE_PERIOD_S", 1)
    time.sleep(2.1)  # the heartbeat is now older than the grace period: the trial counts as dead
    monkeypatch.setattr(finetune.training.run, "train", scripted_train([0.3], seen))
    run_sweep(reopen_sweep(folder))
    assert seen == [1e-3, 1e-4] and "marked running" not in capsys.readouterr().out
    done = sorted(float(r["optimizer.lr"]) for r in read_table(folder) if r["state"] == "complete")
    assert done == [1e-4, 1e-3]
