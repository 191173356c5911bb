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
