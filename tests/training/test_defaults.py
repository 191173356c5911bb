"""`auto` recipe values: the rules, a recipe value winning, and the value landing in the run folder."""

import pytest
import yaml
from transformers import BertConfig, DistilBertConfig

from finetune.errors import RecipeError
from finetune.recipe import load_recipe, validate_recipe
from finetune.training.defaults import auto_epochs, auto_lr, resolve_auto


@pytest.mark.parametrize(
    ("width", "expected"),
    [(768, 2e-5), (384, 8e-5), (1024, 1e-5), (512, 5e-5), (256, 2e-4), (128, 7e-4)],
)
def test_auto_lr_grows_with_the_square_of_narrowness(width, expected):
    lr, why = auto_lr(BertConfig(hidden_size=width, num_attention_heads=4, num_hidden_layers=6))
    assert lr == pytest.approx(expected)
    assert f"hidden {width}" in why and "6 layers" in why


def test_auto_lr_reads_distilberts_own_names_and_falls_back_without_a_width():
    assert auto_lr(DistilBertConfig(dim=384, hidden_dim=1536, n_heads=6))[0] == pytest.approx(8e-5)
    lr, why = auto_lr(type("Config", (), {"model_type": "odd"})())
    assert lr == 2e-5 and "no hidden size" in why


@pytest.mark.parametrize(
    ("examples", "per_step", "epochs"),
    [(450, 32, 10), (900, 32, 6), (1800, 32, 3), (60_000, 32, 3), (10, 32, 10), (1500, 16, 3)],
)
def test_auto_epochs_give_regression_the_minimum_steps_within_the_cap(examples, per_step, epochs):
    assert auto_epochs("regression", examples, per_step)[0] == epochs


@pytest.mark.parametrize("task", ["classification", "multi_label", "token_classification"])
def test_auto_epochs_keep_three_for_labels_however_small_the_set(task):
    assert auto_epochs(task, 450, 32) == (3.0, f"{task}: the usual 3")


def recipe_with(**sections):
    return validate_recipe({"name": "r", **sections})


def test_a_value_the_recipe_sets_always_wins():
    recipe = recipe_with(optimizer={"lr": 3e-5}, training={"epochs": 2})
    resolution = resolve_auto(recipe, BertConfig(hidden_size=384, num_attention_heads=4), 450)
    assert resolution.recipe is recipe and resolution.notes == []


def test_auto_resolves_to_numbers_and_says_so():
    recipe = recipe_with(model={"task": "regression"})
    resolution = resolve_auto(recipe, BertConfig(hidden_size=384, num_attention_heads=4), 900)
    assert resolution.recipe.optimizer.lr == pytest.approx(8e-5)
    assert resolution.recipe.training.epochs == 6
    assert resolution.notes[0].startswith("optimizer.lr: auto -> 8e-05 (bert:")
    assert resolution.notes[1].startswith(
        "training.epochs: auto -> 6 (regression, 900 training examples, 29 steps"
    )


def test_epochs_count_the_global_batch_of_all_processes():
    recipe = recipe_with(model={"task": "regression"}, training={"global_batch_size": 64, "batch_size": 16})
    resolved = resolve_auto(recipe, BertConfig(num_attention_heads=4), 1600, processes=2).recipe
    assert resolved.training.epochs == 6  # 25 steps of 64 per epoch; 2 processes of 16 would make 50


def test_a_resolved_lr_that_breaks_min_lr_names_the_key():
    recipe = load_recipe("base", ["schedule.name=cosine", "schedule.min_lr=5e-5"])
    with pytest.raises(RecipeError, match="schedule.min_lr: 5e-05 must be below optimizer.lr \\(2e-05\\)"):
        resolve_auto(recipe, BertConfig(), 1000)  # BERT-base width: 2e-5


@pytest.mark.integration
def test_train_prints_and_records_the_resolved_values_and_explain_shows_them(tiny_recipe, capsys):
    from finetune.training.explain import explain
    from finetune.training.run import train

    tiny_recipe["optimizer"] = {"lr": "auto"}
    tiny_recipe["training"]["epochs"] = "auto"
    tiny_recipe["early_stopping"] = {"enabled": False}  # the planned steps, all of them
    recipe = validate_recipe(tiny_recipe)
    run = train(recipe)
    out = capsys.readouterr().out
    # the tiny model is 32 wide: 2e-5 x 24^2 = 0.01
    assert "optimizer.lr: auto -> 0.01 (bert: 4 layers, hidden 32" in out
    assert "training.epochs: auto -> 3 (classification: the usual 3)" in out
    saved = yaml.safe_load((run.run_dir / "recipe.yaml").read_text())
    assert saved["optimizer"]["lr"] == pytest.approx(0.01)
    assert saved["training"]["epochs"] == 3
    assert run.results["steps"] == 3 * 6  # 48 training rows in batches of 8
    explained = explain(recipe, plot=None, show_recipe=False)
    assert any(note.startswith("optimizer.lr: auto -> 0.01") for note in explained.notes)
    assert explained.total_steps == 3 * 6


def test_auto_class_weights_resolve_from_the_labels_and_a_resume_takes_the_runs_own():
    from finetune.training.defaults import adopt_resolved, resolve_class_weights

    recipe = validate_recipe({"loss": {"class_weights": "auto"}})
    resolved = resolve_class_weights(recipe, [0, 0, 0, 1], ["ham", "spam"])
    assert resolved.recipe.loss.class_weights == {"ham": round(4 / 6, 4), "spam": 2.0}
    assert resolved.notes == [
        "loss.class_weights: auto (inverse) -> ham 0.6667 (3 examples), spam 2 (1 example)"
    ]
    assert adopt_resolved(recipe, resolved.recipe).loss.class_weights == {"ham": 0.6667, "spam": 2.0}
    unchanged = validate_recipe({"loss": {"class_weights": {"spam": 3}}})
    assert resolve_class_weights(unchanged, [0, 1], ["ham", "spam"]).recipe is unchanged
