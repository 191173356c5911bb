"""Imbalanced classes end to end: `loss.class_weights: auto` resolved, printed and recorded; the
balanced sampler and focal loss train; early stopping watches balanced accuracy."""

import json

import pytest
import yaml
from conftest import NEGATIVE, POSITIVE, write_rows

from finetune.recipe import validate_recipe
from finetune.runs.folders import RECIPE_FILE, RESULTS_FILE
from finetune.training.run import train


@pytest.fixture
def imbalanced_recipe(tiny_recipe, tmp_path):
    """The tiny recipe on 36 negative and 6 positive training rows, short and saving no model."""
    rows = [{"text": t, "label": "neg"} for t in NEGATIVE] * 6 + [
        {"text": t, "label": "pos"} for t in POSITIVE
    ]
    tiny_recipe["data"]["train"] = str(write_rows(tmp_path / "imbalanced.csv", rows))
    tiny_recipe["training"].update(epochs=1)
    tiny_recipe["output"].update(save_model=False, plots=False)
    tiny_recipe["checkpoints"] = {"every_epoch": False}
    return tiny_recipe


def test_auto_class_weights_are_counted_printed_and_recorded(imbalanced_recipe, one_thread, capsys):
    imbalanced_recipe["loss"] = {"class_weights": "auto"}
    result = train(validate_recipe(imbalanced_recipe))
    expected = {"neg": round(42 / (2 * 36), 4), "pos": 42 / (2 * 6)}  # N / (K n_c)
    assert "loss.class_weights: auto (inverse) -> neg 0.5833 (36 examples), pos 3.5 (6 examples)" in (
        capsys.readouterr().out
    )
    assert result.trainer.class_weights.tolist() == pytest.approx([expected["neg"], expected["pos"]])
    saved = yaml.safe_load((result.run_dir / RECIPE_FILE).read_text())
    assert saved["loss"]["class_weights"] == expected  # re-running recipe.yaml trains with these
    recorded = json.loads((result.run_dir / RESULTS_FILE).read_text())
    assert recorded["loss"]["class_weights"] == expected
    final = recorded["final_metrics"]
    assert {"balanced_accuracy", "recall_neg", "recall_pos"} <= set(final)
    assert final["balanced_accuracy"] == pytest.approx((final["recall_neg"] + final["recall_pos"]) / 2)


def test_balanced_sampler_with_focal_loss_stops_on_balanced_accuracy(imbalanced_recipe, one_thread):
    imbalanced_recipe["training"].update(sampler="balanced")
    imbalanced_recipe["loss"] = {"focal_gamma": 2.0}
    imbalanced_recipe["early_stopping"] = {"metric": "balanced_accuracy"}
    result = train(validate_recipe(imbalanced_recipe))
    from finetune.data.samplers import BalancedSampler

    assert isinstance(result.trainer.sampler_epoch.sampler, BalancedSampler)
    recorded = json.loads((result.run_dir / RESULTS_FILE).read_text())
    assert recorded["metric"] == "balanced_accuracy"
    assert recorded["loss"]["focal_gamma"] == 2.0 and recorded["loss"]["class_weights"] == "none"


def test_a_weight_for_a_label_the_data_lacks_fails_before_training(imbalanced_recipe, one_thread):
    from finetune.errors import RecipeError

    imbalanced_recipe["loss"] = {"class_weights": {"positive": 5}}
    with pytest.raises(
        RecipeError,
        match=r"'positive' is not a label of the training data, whose labels are \['neg', 'pos'\]",
    ):
        train(validate_recipe(imbalanced_recipe))


def short(recipe: dict) -> dict:
    recipe["training"].update(max_steps=4)
    recipe["evaluation"].update(every=2, before_training=False)
    return recipe


def test_multi_label_gets_positive_weights_per_label(tiny_recipe, tmp_path, one_thread, capsys):
    rows = [{"text": "the striker scored", "label": "sports"}] * 8 + [
        {"text": "the minister spoke", "label": "politics,sports"}
    ] * 2  # politics: 2 positives, 8 negatives; sports: 10 positives, no negative
    train_file = write_rows(tmp_path / "topics.csv", rows)
    tiny_recipe["model"]["task"] = "multi_label"
    tiny_recipe["data"].update(train=str(train_file), validation=str(train_file))
    tiny_recipe["loss"] = {"class_weights": "auto", "focal_gamma": 1.0}
    tiny_recipe["output"].update(save_model=False, plots=False)
    result = train(validate_recipe(short(tiny_recipe)))
    assert result.results["loss"]["class_weights"] == {"politics": 4.0, "sports": 1.0}
    assert (
        "auto (negatives / positives) -> politics 4 (2 positives), sports 1 (10 positives)"
        in capsys.readouterr().out
    )


def test_token_classification_weighs_tags_counted_over_words(tiny_recipe, tmp_path, one_thread):
    sentences = ["Ada B-PER\nlived O\nhere O\nquietly O", "Paris B-LOC\nis O\nlovely O"] * 4
    train_file = tmp_path / "train.conll"
    train_file.write_text("\n\n".join(sentences) + "\n")
    tiny_recipe["model"]["task"] = "token_classification"
    tiny_recipe["data"].update(train=str(train_file), validation=str(train_file))
    tiny_recipe["loss"] = {"class_weights": "auto", "auto_weights": "effective", "focal_gamma": 2.0}
    tiny_recipe["output"].update(save_model=False, plots=False)
    result = train(validate_recipe(short(tiny_recipe)))
    weights = result.results["loss"]["class_weights"]
    assert list(weights) == ["B-LOC", "B-PER", "O"]  # 4, 4 and 20 words
    assert weights["B-LOC"] == weights["B-PER"] > 1 > weights["O"]
    assert (4 * weights["B-LOC"] + 4 * weights["B-PER"] + 20 * weights["O"]) / 28 == pytest.approx(
        1, abs=1e-3
    )
