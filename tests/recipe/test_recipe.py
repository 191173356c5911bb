"""Recipe loading: YAML, extends, overrides, and the error messages users see."""

from pathlib import Path

import pytest
import yaml

from finetune.errors import RecipeError
from finetune.recipe import Recipe, load_recipe, shipped_recipes_dir, validate_recipe
from finetune.recipe.loading import parse_override


def write(path: Path, data: dict | str) -> Path:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_defaults_are_bert_defaults_with_lr_and_epochs_resolved_per_run():
    recipe = Recipe()
    assert (
        recipe.optimizer.lr == "auto" and recipe.training.epochs == "auto"
    )  # training/defaults.py resolves them
    assert recipe.optimizer.weight_decay == 0.01
    assert recipe.schedule.name == "linear"
    assert recipe.regularization.clip_grad_norm == 1.0


def test_scientific_notation_reads_as_float(tmp_path):
    path = write(tmp_path / "r.yaml", "optimizer:\n  lr: 3e-5\n")
    recipe = load_recipe(path)
    assert recipe.optimizer.lr == pytest.approx(3e-5)
    assert isinstance(recipe.optimizer.lr, float)


def test_extends_chain_merges_base_first(tmp_path):
    write(tmp_path / "a.yaml", {"optimizer": {"lr": 1e-5, "weight_decay": 0.1}, "training": {"epochs": 7}})
    write(tmp_path / "b.yaml", {"extends": "a.yaml", "optimizer": {"lr": 2e-5}})
    write(tmp_path / "c.yaml", {"extends": "b.yaml", "training": {"batch_size": 8}})
    recipe = load_recipe(tmp_path / "c.yaml")
    assert recipe.optimizer.lr == 2e-5  # from b
    assert recipe.optimizer.weight_decay == 0.1  # from a, kept by the deep merge
    assert recipe.training.epochs == 7
    assert recipe.training.batch_size == 8
    assert recipe.name == "c"


def test_extends_a_shipped_recipe_by_name(tmp_path):
    path = write(tmp_path / "mine.yaml", {"extends": "base", "training": {"epochs": 1}})
    recipe = load_recipe(path)
    assert recipe.schedule.warmup_ratio == 0.1  # from recipes/base.yaml
    assert recipe.training.epochs == 1


def test_extends_a_bare_name_prefers_a_sibling_recipe(tmp_path):
    write(tmp_path / "base.yaml", {"schedule": {"warmup_ratio": 0.25}})
    path = write(tmp_path / "mine.yaml", {"extends": "base", "training": {"epochs": 1}})
    recipe = load_recipe(path)
    assert recipe.schedule.warmup_ratio == 0.25  # the sibling base.yaml, not recipes/base.yaml
    # a base.yaml of one's own that extends `base` builds on the shipped one, not on itself
    write(tmp_path / "base.yaml", {"extends": "base", "training": {"epochs": 2}})
    assert (
        load_recipe(path).schedule.warmup_ratio == 0.1
        and load_recipe(tmp_path / "base.yaml").training.epochs == 2
    )


def test_extends_cycle_is_an_error(tmp_path):
    a = write(tmp_path / "a.yaml", {"extends": "b.yaml"})
    b = write(tmp_path / "b.yaml", {"extends": "a.yaml"})
    with pytest.raises(RecipeError) as error:
        load_recipe(a)
    assert f"`extends` forms a cycle: {a} -> {b} -> {a}; remove `extends` from one of them" in str(
        error.value
    )


@pytest.mark.parametrize("reference", ["mine", "mine.yaml", "./mine.yaml"])
def test_a_recipe_that_extends_itself_is_told_so(tmp_path, reference):
    path = write(tmp_path / "mine.yaml", {"extends": reference, "training": {"epochs": 1}})
    with pytest.raises(RecipeError) as error:
        load_recipe(path)
    message = str(error.value)
    assert (
        f"{path}: `extends: {reference}` names this recipe itself" in message and "not found" not in message
    )


def test_missing_recipe_suggests_a_shipped_one():
    with pytest.raises(RecipeError, match="Did you mean 'demo'"):
        load_recipe("dmeo")


def test_overrides_are_typed_and_validated(tmp_path):
    path = write(tmp_path / "r.yaml", {"training": {"epochs": 3}})
    recipe = load_recipe(path, ["optimizer.lr=3e-5", "training.epochs=2", "freeze.layers=[0, '2-3']"])
    assert recipe.optimizer.lr == pytest.approx(3e-5)
    assert recipe.training.epochs == 2
    assert recipe.freeze.layers == [0, "2-3"]
    with pytest.raises(RecipeError, match=r"the command line: optimizer\.lr: Input should be greater than 0"):
        load_recipe(path, ["optimizer.lr=-1"])


@pytest.mark.parametrize("text", ["optimizer.lr", "=3", "optimizer..lr=3"])
def test_malformed_override(text):
    with pytest.raises(RecipeError, match="section.key=value"):
        parse_override(text)


def test_unknown_key_names_file_path_and_suggestion(tmp_path):
    path = write(tmp_path / "typo.yaml", {"optimizer": {"lrr": 1e-5}})
    with pytest.raises(RecipeError) as error:
        load_recipe(path)
    message = str(error.value)
    assert str(path) in message
    assert "optimizer.lrr" in message
    assert "did you mean 'lr'?" in message


def test_key_in_the_wrong_section_says_where_it_belongs():
    with pytest.raises(RecipeError, match="'lr' belongs in `optimizer`"):
        validate_recipe({"training": {"lr": 1e-5}})


def test_unknown_key_from_a_base_recipe_names_the_base_file(tmp_path):
    base = write(tmp_path / "base.yaml", {"schedule": {"warmpu_ratio": 0.1}})
    child = write(tmp_path / "child.yaml", {"extends": "base.yaml", "training": {"epochs": 1}})
    with pytest.raises(RecipeError) as error:
        load_recipe(child)
    assert f"{base}: schedule.warmpu_ratio" in str(error.value)
    assert "did you mean 'warmup_ratio'?" in str(error.value)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"optimizer": {"lr": -1e-5}}, "optimizer.lr: Input should be greater than 0"),
        ({"schedule": {"warmup_ratio": 1.5}}, "schedule.warmup_ratio: Input should be less than 1"),
        (
            {"early_stopping": {"patience": 0}},
            "early_stopping.patience: Input should be greater than or equal to 1",
        ),
        ({"training": {"batch_size": "big"}}, "training.batch_size: Input should be a valid integer"),
        (
            {"schedule": {"warmup_ratio": 0.1, "warmup_steps": 10}},
            "give `warmup_ratio` or `warmup_steps`, not both",
        ),
        ({"freeze": {"layers": ["a-b"]}}, "freeze.layers: 'a-b' is not a layer index or a range"),
        ({"freeze": {"layers": ["5-2"]}}, "range '5-2' is empty"),
        ({"optimizer": {"betas": [0.9, 1.5]}}, "each beta must be in [0, 1)"),
        ({"evaluation": {"every": 0}}, "evaluation.every"),
        ({"model": {"task": "regression"}}, "early_stopping.metric: 'accuracy' is not a regression metric"),
        (
            {
                "model": {"task": "regression"},
                "early_stopping": {"metric": "pearson"},
                "regularization": {"label_smoothing": 0.1},
            },
            "label_smoothing: only applies to classification",
        ),
    ],
)
def test_bad_values_name_key_and_range(data, expected):
    if data.get("model", {}).get("task") == "regression" and "early_stopping" not in data:
        data = {**data, "early_stopping": {"metric": "accuracy"}}
    with pytest.raises(RecipeError) as error:
        validate_recipe(data)
    assert expected in str(error.value)


def test_all_problems_are_reported_together():
    with pytest.raises(RecipeError) as error:
        validate_recipe({"optimizer": {"lr": -1, "eps": 0}, "training": {"epochs": 0}})
    message = str(error.value)
    assert "3 problems" in message
    for key in ("optimizer.lr", "optimizer.eps", "training.epochs"):
        assert key in message


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path / "broken.yaml", "optimizer:\n  lr: 1e-5\n  weight_decay: [0.1\n")
    with pytest.raises(RecipeError, match=r"broken.yaml, line \d+: not valid YAML"):
        load_recipe(path)


def test_top_level_must_be_a_mapping(tmp_path):
    path = write(tmp_path / "list.yaml", "- a\n- b\n")
    with pytest.raises(RecipeError, match="must be a mapping"):
        load_recipe(path)


def test_resolved_recipe_round_trips(tmp_path):
    recipe = load_recipe("glue-mrpc", ["data.dir=/data/glue"])
    path = write(tmp_path / "resolved.yaml", recipe.to_yaml_dict())
    assert load_recipe(path) == recipe


def test_every_shipped_recipe_validates():
    # sweep files (recipes/sweeps/*.sweep.yaml) are not recipes; tests/search/test_sweep.py validates them
    paths = sorted(p for p in shipped_recipes_dir().rglob("*.yaml") if not p.name.endswith(".sweep.yaml"))
    everything = list(shipped_recipes_dir().glob("**/*.yaml"))
    assert len(paths) == len([p for p in everything if not p.name.endswith(".sweep.yaml")]) >= 6
    for path in paths:
        load_recipe(path)


def test_hub_with_file_keys_is_an_error_naming_them():
    hub = {"name": "glue", "config": "sst2"}
    with pytest.raises(RecipeError) as error:
        validate_recipe({"data": {"hub": hub, "validation": "dev.csv", "header": False}})
    message = str(error.value)
    assert "data.validation, data.header would be ignored" in message
    assert "data.hub.validation_split" in message
    with pytest.raises(RecipeError, match="data.dir would be ignored"):
        validate_recipe({"data": {"hub": hub, "dir": "builtin:demo"}})
    with pytest.raises(RecipeError, match="data.train would be ignored"):
        validate_recipe({"data": {"hub": hub, "train": "train.csv"}})
    # the defaults, written out as a resolved recipe.yaml does, are fine
    recipe = validate_recipe({"data": {"hub": hub, "format": "auto", "header": True, "validation": None}})
    assert validate_recipe(recipe.to_yaml_dict()).data.hub.config == "sst2"


def alias_bomb(levels: int) -> str:
    """'Billion laughs' under a valid key: each level a list of ten aliases of the level below."""
    lines = ["freeze:", "  layers:", "    - &l0 [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]"]
    for level in range(1, levels):
        lines.append(f"    - &l{level} [{', '.join([f'*l{level - 1}'] * 10)}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "text", [alias_bomb(6), "model: &m {name: x, extra: *m}\n"], ids=["billion-laughs", "recursive"]
)
def test_yaml_alias_bomb_is_refused_in_one_short_message(tmp_path, capsys, text):
    from finetune.cli import main

    path = write(tmp_path / "bomb.yaml", text)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: YAML aliases" in err and len(err) < 400 and "Traceback" not in err
