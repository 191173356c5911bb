"""The Optuna study: a terrible value is pruned; workers started together draw different points,
and one worker repeats its seed."""

import json

import pytest
from sweeps import read_table, sweep_spec

from finetune.recipe import load_recipe
from finetune.search.sweep import run_sweep
from finetune.search.sweep_folder import start_sweep

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_terrible_value_is_pruned(trial_recipe, tmp_path):
    spec = sweep_spec(
        method="grid",
        pruning={"startup_trials": 2, "warmup_evaluations": 0},
        space={"optimizer.lr": [1e-3, 2e-3, 0.9]},  # in this order: two good trials set the median
    )
    folder = tmp_path / "sweep"
    run_sweep(start_sweep(trial_recipe, spec, folder, "s.yaml"))
    rows = {float(r["optimizer.lr"]): r for r in read_table(folder)}
    assert rows[1e-3]["state"] == rows[2e-3]["state"] == "complete"
    assert rows[0.9]["state"] == "pruned"
    pruned = json.loads((folder / rows[0.9]["run_dir"] / "results.json").read_text())
    assert pruned["stop_reason"] == "pruned by the sweep at step 2 (evaluation 1)"
    assert pruned["steps"] == 2 < int(rows[1e-3]["steps"]) == 4
    # best.yaml is the complete trial with the lower loss; which lr that is rests on 4 steps near chance
    winner = min((rows[1e-3], rows[2e-3]), key=lambda row: float(row["loss"]))
    assert load_recipe(folder / "best.yaml").optimizer.lr == float(winner["optimizer.lr"])


def proposals(studies, spec, count):
    """Trials asked of the studies in turn, as workers sharing a storage would; each one's drawn values."""
    from finetune.search.sweep_study import suggest

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
    from finetune.search.sweep_study import open_study

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
