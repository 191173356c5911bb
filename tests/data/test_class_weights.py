"""`loss.class_weights`: auto weights from training-label counts, checked mappings."""

import numpy as np
import pytest

from finetune.data.class_weights import (
    class_counts,
    effective_weights,
    inverse_weights,
    resolve_weights,
    weight_vector,
)
from finetune.errors import RecipeError
from finetune.recipe.loss import LossSection

NAMES = ["negative", "positive"]
LABELS = [0] * 90 + [1] * 10


def test_inverse_frequency_of_90_10_is_sklearn_balanced_and_averages_1_per_example():
    weights = inverse_weights(np.array([90.0, 10.0]))
    assert weights == pytest.approx([100 / 180, 100 / 20])  # N / (K n_c): 0.556, 5
    assert (weights * [90, 10]).sum() / 100 == pytest.approx(1.0)


def test_effective_number_of_samples_by_hand():
    beta = 0.999
    weights = effective_weights(np.array([90.0, 10.0]), beta)
    raw = np.array([(1 - beta) / (1 - beta**90), (1 - beta) / (1 - beta**10)])
    assert weights == pytest.approx(raw * 100 / (raw * [90, 10]).sum())
    assert weights[1] / weights[0] < 9  # milder than inverse frequency (ratio 9)
    assert effective_weights(np.array([90.0, 10.0]), 1e-9) == pytest.approx([1, 1], abs=1e-6)


def test_auto_resolves_to_a_named_mapping_and_a_line_that_gives_the_counts():
    weights, note = resolve_weights(LossSection(class_weights="auto"), "classification", LABELS, NAMES)
    assert weights == {"negative": 0.5556, "positive": 5.0}
    assert (
        note
        == "loss.class_weights: auto (inverse) -> negative 0.5556 (90 examples), positive 5 (10 examples)"
    )
    effective, _ = resolve_weights(
        LossSection(class_weights="auto", auto_weights="effective"), "classification", LABELS, NAMES
    )
    assert effective["positive"] < 5.0


def test_multi_label_auto_is_negatives_over_positives_per_label():
    vectors = [[1.0, 0.0, 1.0]] * 2 + [[0.0, 0.0, 1.0]] * 6 + [[0.0, 1.0, 1.0]] * 2
    assert class_counts("multi_label", vectors, 3).tolist() == [2, 2, 10]
    weights, note = resolve_weights(
        LossSection(class_weights="auto"), "multi_label", vectors, ["a", "b", "c"]
    )
    assert weights == {"a": 4.0, "b": 4.0, "c": 1.0}  # c: no negative, nothing to balance
    assert "negatives / positives" in note


def test_token_classification_counts_words_not_sentences():
    tags = [[0, 0, 0, 1], [0, 0, 2, 2]]
    assert class_counts("token_classification", tags, 3).tolist() == [5, 1, 2]


def test_a_mapping_leaves_unnamed_labels_at_1_and_names_an_unknown_label():
    spec = LossSection(class_weights={"positive": 4})
    assert resolve_weights(spec, "classification", LABELS, NAMES) == ({"positive": 4.0}, None)
    assert weight_vector({"positive": 4.0}, NAMES) == [1.0, 4.0]
    with pytest.raises(
        RecipeError, match=r"'postive' is not a label .* labels are \['negative', 'positive'\]"
    ):
        resolve_weights(LossSection(class_weights={"postive": 4}), "classification", LABELS, NAMES)


def test_none_resolves_to_nothing():
    assert resolve_weights(LossSection(), "classification", LABELS, NAMES) == (None, None)
