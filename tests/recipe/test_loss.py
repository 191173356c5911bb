"""`loss:` and `training.sampler`: which tasks they fit, and the errors that say so."""

import pytest

from finetune.errors import RecipeError
from finetune.recipe import validate_recipe


def recipe(**sections):
    return validate_recipe({"model": {"task": "classification"}, **sections})


def test_weights_by_label_name_with_number_keys_read_as_text():
    loaded = recipe(loss={"class_weights": {0: 1, 1: 9.5}, "focal_gamma": 2})
    assert loaded.loss.class_weights == {"0": 1.0, "1": 9.5}
    assert loaded.loss.active and not recipe().loss.active


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"loss": {"class_weights": {"pos": 0}}}, "weights must be positive"),
        ({"loss": {"class_weights": {}}}, "empty mapping"),
        ({"loss": {"focal_gamma": -1}}, "focal_gamma"),
        ({"loss": {"class_weights": "inverse"}}, "class_weights"),
        (
            {"model": {"task": "regression"}, "loss": {"class_weights": "auto"}},
            "loss.class_weights: weighs classes, and regression has none",
        ),
        ({"model": {"task": "regression"}, "loss": {"focal_gamma": 2}}, "loss.focal_gamma: weighs classes"),
        (
            {"model": {"task": "multi_label"}, "training": {"sampler": "balanced"}},
            "training.sampler: `balanced` draws by class",
        ),
        (
            {"training": {"sampler": "balanced"}, "loss": {"class_weights": "auto"}},
            "corrected twice",
        ),
    ],
)
def test_misfits_are_errors_naming_the_key(sections, message):
    with pytest.raises(RecipeError, match=message):
        recipe(**sections)


def test_early_stopping_may_watch_balanced_accuracy_or_a_class_recall():
    assert recipe(early_stopping={"metric": "balanced_accuracy"}).early_stopping.metric == "balanced_accuracy"
    assert recipe(early_stopping={"metric": "recall_positive"}).early_stopping.greater_is_better(
        "classification"
    )
    with pytest.raises(RecipeError, match="early_stopping.metric"):
        validate_recipe({"model": {"task": "regression"}, "early_stopping": {"metric": "recall_x"}})
