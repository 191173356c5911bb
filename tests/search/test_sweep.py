"""Sweeps: the sweep-file schema and its errors, a grid sweep's trials and best.yaml, pruning, resume."""

import csv
import errno
import json
from pathlib import Path

import pytest
import yaml

from finetune.cli import main
from finetune.errors import FinetuneError
from finetune.recipe import load_recipe, shipped_recipes_dir, validate_recipe
from finetune.search.sweep import (
    SweepError,
    check_space,
    load_sweep_file,
    reopen_sweep,
    run_sweep,
    start_sweep,
    validate_sweep_file,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def short_recipe(tiny_recipe):
    """The tiny recipe, 4 steps with an evaluation every 2, no model saved: a trial takes seconds."""
    tiny_recipe["training"].update({"max_steps": 4})
    tiny_recipe["evaluation"].update({"every": 2, "before_training": False})
    tiny_recipe["output"].update({"save_model": False, "plots": False, "dir": None})
    tiny_recipe["early_stopping"] = {"metric": "loss"}
    return validate_recipe(tiny_recipe)


def sweep_spec(**data):
    return validate_sweep_file({"name": "test", **data})


def problems_of(data):
    with pytest.raises(SweepError) as error:
        validate_sweep_file(data, "s.sweep.yaml")
    return str(error.value)


# ---------------------------------------------------------------------------------------------
# The sweep file


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"trails": 3, "space": {"optimizer.lr": [1e-5]}},
            "trails: unknown key 'trails': did you mean 'trials'?",
        ),
        (
            {"method": "grid", "space": {"optimizer.lrr": [1e-5]}},
            "space.optimizer.lrr: not a recipe key in `optimizer`: unknown key 'lrr': did you mean 'lr'?",
        ),
        (
            {"method": "grid", "space": {"training.lr": [1e-5]}},
            "space.training.lr: not a recipe key in `training`: unknown key 'lr': 'lr' belongs in `optimizer`.",
        ),
        (
            {"method": "grid", "space": {"optimizer.lr.x": [1]}},
            "space.optimizer.lr.x: 'optimizer.lr' is a value, not a section",
        ),
        ({"method": "grid", "space": {"output.dir": ["a"]}}, "space.output.dir: cannot be swept"),
        (
            {"method": "grid", "space": {"early_stopping.metric": ["f1"]}},
            "space.early_stopping.metric: cannot be swept: a sweep optimizes one metric",
        ),
        (
            {"trials": 2, "space": {"optimizer.lr": {"log_uniform": [1e-4, 1e-5]}}},
            "space.optimizer.lr: log_uniform: the low end must be below the high end, got [0.0001, 1e-05]",
        ),
        (
            {"trials": 2, "space": {"optimizer.weight_decay": {"log_uniform": [0, 0.1]}}},
            "space.optimizer.weight_decay: log_uniform: both ends must be > 0",
        ),
        (
            {"trials": 2, "space": {"optimizer.lr": {"log_unifrom": [1e-5, 1e-4]}}},
            "space.optimizer.lr: log_unifrom: unknown key 'log_unifrom': did you mean 'log_uniform'?",
        ),
        (
            {"trials": 2, "space": {"optimizer.lr": {"uniform": [1e-5, 1e-4], "integer": [1, 2]}}},
            "space.optimizer.lr: give exactly one of uniform, log_uniform, integer",
        ),
        (
            {"trials": 2, "space": {"optimizer.lr": {"log_uniform": [1e-5, 1e-4], "step": 1e-5}}},
            "space.optimizer.lr: step: a log_uniform range has no step",
        ),
        (
            {"method": "grid", "space": {"schedule.name": []}},
            "space.schedule.name: the list of values is empty",
        ),
        (
            {"method": "grid", "space": {"schedule.name": ["linear", "linear"]}},
            'space.schedule.name: values repeat: "linear"',
        ),
        (
            {"method": "grid", "space": {"schedule.name": "linear"}},
            "space.schedule.name: give a list of values",
        ),
        (
            {"method": "grid", "space": {"optimizer.lr": {"log_uniform": [1e-5, 1e-4]}}},
            "space.optimizer.lr: grid search needs a list of values or a range with a `step`",
        ),
        (
            {"method": "random", "space": {"optimizer.lr": [1e-5]}},
            "trials: a random sweep needs a trial budget",
        ),
        (
            {"method": "bayes", "space": {"optimizer.lr": [1e-5]}},
            "method: Input should be 'grid', 'random' or 'tpe'",
        ),
        ({"method": "grid"}, "space: Field required"),
    ],
)
def test_a_bad_sweep_file_names_the_key(data, expected):
    message = problems_of(data)
    assert message.startswith("sweep file is invalid")
    assert f"s.sweep.yaml: {expected}" in message


def test_all_problems_are_reported_together():
    message = problems_of(
        {"trails": 1, "space": {"optimizer.lrr": [1], "schedule.name": [], "training.epochs": [1]}}
    )
    assert "(3 problems)" in message
    for key in ("trails", "space.optimizer.lrr", "space.schedule.name"):
        assert key in message


def test_ranges_and_grids():
    spec = sweep_spec(
        method="grid",
        space={
            "training.batch_size": {"integer": [8, 32], "step": 8},
            "regularization.label_smoothing": {"uniform": [0.0, 0.2], "step": 0.1},
            "freeze.layers": [[], ["0-1"]],
            "layer_lr.lrs.head": [1e-4],  # into a mapping-valued key
        },
    )
    assert spec.grid()["training.batch_size"] == [8, 16, 24, 32]
    assert spec.grid()["regularization.label_smoothing"] == [0.0, 0.1, 0.2]
    assert spec.grid_size() == spec.budget() == 4 * 3 * 2
    assert sweep_spec(method="grid", trials=5, space=spec.space).budget() == 5
    assert sweep_spec(method="grid", trials=500, space=spec.space).budget() == 24


def test_values_must_make_a_valid_recipe(short_recipe):
    spec = sweep_spec(
        method="tpe",
        trials=3,
        space={
            "optimizer.lr": {"log_uniform": [1e-5, 2.0]},
            "training.batch_size": [8, 0],
            "freeze.layers": [["a-b"]],
        },
    )
    with pytest.raises(SweepError) as error:
        check_space(short_recipe, spec, "s.sweep.yaml")
    message = str(error.value)
    assert "(3 problems)" in message
    assert "space.optimizer.lr: value 2.0 does not make a valid recipe: optimizer.lr:" in message
    assert "space.training.batch_size: value 0 does not make a valid recipe" in message
    assert "space.freeze.layers: value ['a-b']" in message


def test_sweep_metric_must_fit_the_task(short_recipe, tmp_path):
    spec = sweep_spec(method="grid", metric="pearson", space={"optimizer.lr": [1e-3]})
    with pytest.raises(
        SweepError, match="s.yaml: metric/direction: .*'pearson' is not a classification metric"
    ):
        start_sweep(short_recipe, spec, tmp_path / "sweep", "s.yaml")
    assert not (tmp_path / "sweep").exists()


def test_shipped_sweep_files_validate_against_the_demo_recipe():
    paths = sorted((shipped_recipes_dir() / "sweeps").glob("*.sweep.yaml"))
    assert len(paths) >= 3
    demo = load_recipe("demo")
    for path in paths:
        spec = load_sweep_file(path)
        check_space(demo, spec, str(path))
    assert load_sweep_file("demo-lr").name == "demo-lr"  # shipped sweeps are found by name


# ---------------------------------------------------------------------------------------------
# Running sweeps


def read_table(folder):
    return list(csv.DictReader((folder / "results.csv").open()))


def test_grid_sweep_runs_every_combination_and_writes_best_yaml(short_recipe, tmp_path):
    spec = sweep_spec(
        method="grid",
        pruning={"enabled": False},
        space={"optimizer.lr": [1e-4, 3e-3], "freeze.layers": [[], [0, 1]]},
    )
    folder = tmp_path / "sweep"
    summary = run_sweep(start_sweep(short_recipe, spec, folder, "s.yaml"))

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


def test_a_terrible_value_is_pruned(short_recipe, tmp_path):
    spec = sweep_spec(
        method="grid",
        pruning={"startup_trials": 2, "warmup_evaluations": 0},
        space={"optimizer.lr": [1e-3, 2e-3, 0.9]},  # in this order: two good trials set the median
    )
    folder = tmp_path / "sweep"
    run_sweep(start_sweep(short_recipe, spec, folder, "s.yaml"))
    rows = {float(r["optimizer.lr"]): r for r in read_table(folder)}
    assert rows[1e-3]["state"] == rows[2e-3]["state"] == "complete"
    assert rows[0.9]["state"] == "pruned"
    pruned = json.loads((folder / rows[0.9]["run_dir"] / "results.json").read_text())
    assert pruned["stop_reason"] == "pruned by the sweep at step 2 (evaluation 1)"
    assert pruned["steps"] == 2 < int(rows[1e-3]["steps"]) == 4
    # best.yaml is the complete trial with the lower loss; which lr that is rests on 4 steps near chance
    winner = min((rows[1e-3], rows[2e-3]), key=lambda row: float(row["loss"]))
    assert load_recipe(folder / "best.yaml").optimizer.lr == float(winner["optimizer.lr"])


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
    short_recipe, tmp_path, monkeypatch
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
        run_sweep(start_sweep(short_recipe, spec, folder, "s.yaml"))
    pruned = folder / "trial-002"
    results = json.loads((pruned / "results.json").read_text())  # what the run itself wrote, whole
    assert results["steps"] == 2 and not str(results.get("stop_reason")).startswith("pruned by the sweep")
    assert [p.name for p in pruned.iterdir() if "results" in p.name] == ["results.json"]


def test_a_stopped_grid_sweep_resumes_without_redoing_finished_trials(short_recipe, tmp_path, monkeypatch):
    import finetune.training.run

    spec = sweep_spec(
        method="grid", pruning={"enabled": False}, space={"optimizer.lr": [1e-4, 1e-3, 3e-3, 1e-2]}
    )
    folder, trained = tmp_path / "sweep", []
    monkeypatch.setattr(
        finetune.training.run, "train", scripted_train([0.5, 0.6, KeyboardInterrupt()], trained)
    )
    with pytest.raises(KeyboardInterrupt):
        run_sweep(start_sweep(short_recipe, spec, folder, "s.yaml"))
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


def test_tpe_sweep_resumes_to_its_budget(short_recipe, tmp_path, monkeypatch):
    import finetune.training.run

    spec = sweep_spec(method="tpe", trials=3, space={"optimizer.lr": {"log_uniform": [1e-4, 1e-2]}})
    folder, seen = tmp_path / "sweep", []
    monkeypatch.setattr(finetune.training.run, "train", scripted_train([0.5, KeyboardInterrupt()], seen))
    with pytest.raises(KeyboardInterrupt):
        run_sweep(start_sweep(short_recipe, spec, folder, "s.yaml"))
    interrupted = seen[1]

    bigger = sweep_spec(method="tpe", trials=4, space=spec.model_dump()["space"])
    with pytest.raises(SweepError, match="different recipe or sweep file .*sweep trials"):
        start_sweep(short_recipe, bigger, folder, "s.yaml")  # the same folder must hold the same sweep
    with pytest.raises(SweepError, match="different recipe or sweep file .*optimizer.weight_decay"):
        other = short_recipe.model_copy(
            update={"optimizer": short_recipe.optimizer.model_copy(update={"weight_decay": 0.2})}
        )
        start_sweep(other, spec, folder, "s.yaml")

    seen.clear()  # the same command again continues: the interrupted values first, then a new draw
    monkeypatch.setattr(finetune.training.run, "train", scripted_train([0.4, 0.3], seen))
    run_sweep(start_sweep(short_recipe, spec, folder, "s.yaml"))
    assert len(seen) == 2 and seen[0] == interrupted and seen[1] != interrupted
    assert [r["state"] for r in read_table(folder)] == ["complete"] * 3 + ["fail"]

    seen.clear()
    run_sweep(start_sweep(short_recipe, spec, folder, "s.yaml"))  # the budget is used: nothing to do
    assert seen == []


def test_existing_folder_that_is_not_a_sweep_is_never_touched(short_recipe, tmp_path):
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep")
    spec = sweep_spec(method="grid", space={"optimizer.lr": [1e-3]})
    with pytest.raises(SweepError, match="exists and is not a sweep folder"):
        start_sweep(short_recipe, spec, folder, "s.yaml")
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    with pytest.raises(SweepError, match="not a sweep folder"):
        reopen_sweep(folder)


def test_sweep_command_line(short_recipe, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(short_recipe.to_yaml_dict()))
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


def scripted_train(outcomes, seen):
    """A stand-in for pipeline.train: each call takes the next outcome (a metric value or an error)."""
    from pathlib import Path

    from finetune.runs.folders import write_recipe
    from finetune.training.run import RunResult

    def train(recipe, source=None, callbacks=None):
        seen.append(recipe.optimizer.lr)
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        run_dir = Path(recipe.output.dir)
        run_dir.mkdir(parents=True)
        write_recipe(run_dir, recipe)
        return RunResult(run_dir=run_dir, results={"best": {"value": outcome}, "steps": 1})

    return train


def test_a_failed_trial_stays_failed_and_a_signal_stops_the_sweep(short_recipe, tmp_path, monkeypatch):
    import finetune.training.run
    from finetune.training.guards import RunInterrupted, TrainingDiverged

    spec = sweep_spec(method="grid", space={"optimizer.lr": [1e-4, 1e-3, 3e-3, 1e-2]})
    folder, seen = tmp_path / "sweep", []
    outcomes = [0.5, TrainingDiverged("training loss is nan"), RunInterrupted("SIGINT received", 2)]
    monkeypatch.setattr(finetune.training.run, "train", scripted_train(outcomes, seen))
    with pytest.raises(KeyboardInterrupt):
        run_sweep(start_sweep(short_recipe, spec, folder, "s.yaml"))
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


def test_readme_documents_every_sweep_file_key():
    """The sweep guide (docs/tuning.md, moved there from the README) documents every sweep-file key."""
    from conftest import REPO

    from finetune.recipe.sweep import PruningSection, RangeSpec, SweepFile

    text = (REPO / "docs" / "tuning.md").read_text()
    section = text.split("## Sweeps: `finetune sweep`")[1].split("## Cross-validation")[0]
    keys = [name for name in SweepFile.model_fields if name != "pruning"]
    keys += [f"pruning.{name}" for name in PruningSection.model_fields]
    keys += list(RangeSpec.model_fields)
    missing = [key for key in keys if f"`{key}" not in section]
    assert not missing, f"docs/tuning.md's sweep section does not document {missing}"


def test_a_diverged_first_trial_is_a_result_but_a_broken_setup_stops_the_sweep(
    short_recipe, tmp_path, monkeypatch
):
    import finetune.training.run
    from finetune.errors import DataError
    from finetune.training.guards import TrainingDiverged

    spec = sweep_spec(method="grid", space={"optimizer.lr": [0.5, 1e-3]})
    seen = []
    monkeypatch.setattr(
        finetune.training.run, "train", scripted_train([TrainingDiverged("loss is inf"), 0.4], seen)
    )
    run_sweep(start_sweep(short_recipe, spec, tmp_path / "a", "s.yaml"))
    assert [(r["state"], r["error"]) for r in read_table(tmp_path / "a")] == [
        ("complete", ""),
        ("fail", "loss is inf"),
    ]

    monkeypatch.setattr(
        finetune.training.run, "train", scripted_train([DataError("data.train: file not found")], seen)
    )
    with pytest.raises(DataError, match="file not found"):  # nothing worked yet: say why and stop
        run_sweep(start_sweep(short_recipe, spec, tmp_path / "b", "s.yaml"))


def test_readme_sweep_example_is_a_valid_sweep_for_the_demo_recipe():
    """The sweep file shown in the sweep guide (docs/tuning.md) is valid for the demo recipe."""
    from conftest import REPO

    from finetune.recipe import parse_yaml

    text = (REPO / "docs" / "tuning.md").read_text()
    block = text.split("# my.sweep.yaml\n")[1].split("```")[0]
    spec = validate_sweep_file(parse_yaml(block, "docs/tuning.md"), "docs/tuning.md")
    check_space(load_recipe("demo"), spec, "docs/tuning.md")
    assert spec.method == "tpe" and len(spec.space) == 5


# ---------------------------------------------------------------------------------------------
# Several workers, and workers that die


def proposals(studies, spec, count):
    """Trials asked of the studies in turn, as workers sharing a storage would; each one's drawn values."""
    from finetune.search.sweep import suggest

    drawn = []
    for i in range(count):
        study = studies[i % len(studies)]
        trial = study.ask()
        drawn.append(tuple(suggest(trial, key, dim) for key, dim in spec.space.items()))
        study.tell(trial, 0.1 * i)
    return drawn


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
@pytest.mark.parametrize("method", ["random", "tpe"])
def test_workers_started_together_draw_different_points_and_one_worker_repeats_its_seed(method, tmp_path):
    from finetune.search.sweep import open_study

    spec = sweep_spec(
        method=method,
        trials=6,
        space={
            "optimizer.lr": {"log_uniform": [1e-5, 1e-2]},
            "schedule.name": ["linear", "cosine", "constant"],
        },
    )
    shared = tmp_path / "shared"
    shared.mkdir()
    # two workers that opened the study at the same moment (both saw no trials yet), asking alternately
    workers = [open_study(shared, spec, greater_is_better=True) for _ in range(2)]
    drawn = proposals(workers, spec, 6)
    assert len({lr for lr, _ in drawn}) == 6  # TPE's start-up draws are random too: all differ

    alone = []
    for name in ("a", "b"):  # one worker, the same seed: the same sequence
        (tmp_path / name).mkdir()
        alone.append(proposals([open_study(tmp_path / name, spec, greater_is_better=True)], spec, 6))
    assert alone[0] == alone[1]
    (tmp_path / "c").mkdir()
    other_seed = spec.model_copy(update={"seed": 1})
    assert proposals([open_study(tmp_path / "c", other_seed, greater_is_better=True)], spec, 6) != alone[0]


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_killed_workers_trial_is_reported_until_the_grace_period_fails_it(
    short_recipe, tmp_path, monkeypatch, capsys
):
    import time

    import finetune.search.sweep
    import finetune.training.run
    from finetune.search.sweep import enqueue_pending, open_study, suggest

    spec = sweep_spec(method="grid", pruning={"enabled": False}, space={"optimizer.lr": [1e-4, 1e-3]})
    folder = tmp_path / "sweep"
    sweep = start_sweep(short_recipe, spec, folder, "s.yaml")
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

    monkeypatch.setattr(finetune.search.sweep, "GRACE_PERIOD_S", 1)
    time.sleep(2.1)  # the heartbeat is now older than the grace period: the trial counts as dead
    monkeypatch.setattr(finetune.training.run, "train", scripted_train([0.3], seen))
    run_sweep(reopen_sweep(folder))
    assert seen == [1e-3, 1e-4] and "marked running" not in capsys.readouterr().out
    done = sorted(float(r["optimizer.lr"]) for r in read_table(folder) if r["state"] == "complete")
    assert done == [1e-4, 1e-3]
