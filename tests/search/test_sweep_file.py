"""Sweep files: the schema and its errors, every value checked against the recipe, the shipped
sweep files and the sweep guide's example."""

import pytest
from sweeps import sweep_spec

from finetune.recipe import load_recipe, shipped_recipes_dir
from finetune.search.sweep_file import SweepError, check_space, load_sweep_file, validate_sweep_file
from finetune.search.sweep_folder import start_sweep

pytestmark = pytest.mark.usefixtures("one_thread")


def problems_of(data):
    with pytest.raises(SweepError) as error:
        validate_sweep_file(data, "s.sweep.yaml")
    return str(error.value)


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


def test_values_must_make_a_valid_recipe(trial_recipe):
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
        check_space(trial_recipe, spec, "s.sweep.yaml")
    message = str(error.value)
    assert "(3 problems)" in message
    assert "space.optimizer.lr: value 2.0 does not make a valid recipe: optimizer.lr:" in message
    assert "space.training.batch_size: value 0 does not make a valid recipe" in message
    assert "space.freeze.layers: value ['a-b']" in message


def test_sweep_metric_must_fit_the_task(trial_recipe, tmp_path):
    spec = sweep_spec(method="grid", metric="pearson", space={"optimizer.lr": [1e-3]})
    with pytest.raises(
        SweepError, match="s.yaml: metric/direction: .*'pearson' is not a classification metric"
    ):
        start_sweep(trial_recipe, spec, tmp_path / "sweep", "s.yaml")
    assert not (tmp_path / "sweep").exists()


def test_shipped_sweep_files_validate_against_the_demo_recipe():
    paths = sorted((shipped_recipes_dir() / "sweeps").glob("*.sweep.yaml"))
    assert len(paths) >= 3
    demo = load_recipe("demo")
    for path in paths:
        spec = load_sweep_file(path)
        check_space(demo, spec, str(path))
    assert load_sweep_file("demo-lr").name == "demo-lr"  # shipped sweeps are found by name


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


def test_readme_sweep_example_is_a_valid_sweep_for_the_demo_recipe():
    """The sweep file shown in the sweep guide (docs/tuning.md) is valid for the demo recipe."""
    from conftest import REPO

    from finetune.recipe import parse_yaml

    text = (REPO / "docs" / "tuning.md").read_text()
    block = text.split("# my.sweep.yaml\n")[1].split("```")[0]
    spec = validate_sweep_file(parse_yaml(block, "docs/tuning.md"), "docs/tuning.md")
    check_space(load_recipe("demo"), spec, "docs/tuning.md")
    assert spec.method == "tpe" and len(spec.space) == 5
