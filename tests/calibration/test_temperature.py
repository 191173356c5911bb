"""Temperature scaling's measures against hand computations, and the fit on deliberately
over- and under-confident logits."""

import math

import numpy as np
import pytest

from finetune.calibration.temperature import (
    calibration_summary,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability_bins,
)
from finetune.errors import FinetuneError


def test_ece_of_hand_made_predictions_equals_the_hand_computation():
    # confidences 0.9 (right), 0.9 (wrong), 0.7 (right), 0.55 (right); 5 bins of width 0.2
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.3, 0.7], [0.55, 0.45]])
    labels = np.array([0, 1, 1, 0])
    # (0.8, 1]: accuracy 1/2, confidence 0.9 -> 2/4 * 0.4; (0.6, 0.8]: 1/4 * 0.3; (0.4, 0.6]: 1/4 * 0.45
    assert expected_calibration_error(probabilities, labels, bins=5) == pytest.approx(0.2 + 0.075 + 0.1125)


def test_reliability_bins_hold_every_example_once_with_upper_edges_inclusive():
    probabilities = np.array([[0.8, 0.2], [0.5, 0.5], [0.05, 0.95]])
    rows = reliability_bins(probabilities, np.array([0, 1, 1]), bins=10)
    assert len(rows) == 10 and sum(r["count"] for r in rows) == 3
    assert rows[7]["count"] == 1 and rows[7]["confidence"] == pytest.approx(0.8)  # (0.7, 0.8]
    assert rows[4]["count"] == 1 and rows[4]["accuracy"] == 0.0  # a 0.5 tie answers class 0: wrong
    assert rows[9]["accuracy"] == 1.0 and rows[0]["confidence"] is None  # empty bins kept


def test_nll_matches_a_hand_computation_at_two_temperatures():
    logits = np.array([[0.0, math.log(3.0)]])  # softmax: 1/4, 3/4
    assert negative_log_likelihood(logits, np.array([1])) == pytest.approx(-math.log(0.75))
    root3 = math.sqrt(3.0)  # at T = 2 the logit gap halves: p = sqrt(3) / (1 + sqrt(3))
    assert negative_log_likelihood(logits, np.array([1]), 2.0) == pytest.approx(
        -math.log(root3 / (1 + root3))
    )


def noisy_logits(scale: float, noise: float, n: int = 3000, classes: int = 3, seed: int = 0):
    """Logits that point at the true class with margin `scale`, then a share `noise` of labels changed."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    logits = rng.normal(0, 1, (n, classes)) + scale * np.eye(classes)[labels]
    flipped = rng.random(n) < noise
    labels[flipped] = (labels[flipped] + rng.integers(1, classes, flipped.sum())) % classes
    return logits, labels


def test_over_confident_logits_get_a_temperature_above_one_that_lowers_ece_on_held_out_examples():
    logits, labels = noisy_logits(scale=10.0, noise=0.3)  # ~100% confident, ~70% right
    fit, held_out = slice(0, 1500), slice(1500, None)
    temperature = fit_temperature(logits[fit], labels[fit])
    assert temperature > 1.5
    summary = calibration_summary(logits[held_out], labels[held_out], temperature, bins=15)
    assert summary["ece_before"] > 0.2
    assert summary["ece_after"] < summary["ece_before"] / 3
    assert summary["nll_after"] < summary["nll_before"]


def test_under_confident_logits_get_a_temperature_below_one():
    logits, labels = noisy_logits(scale=4.0, noise=0.0)
    temperature = fit_temperature(logits * 0.2, labels)  # right ~95% of the time, shown as ~45% sure
    assert temperature < 0.5


def test_the_fitted_temperature_minimises_the_nll():
    logits, labels = noisy_logits(scale=3.0, noise=0.1, n=500)
    best = fit_temperature(logits, labels)
    at = lambda t: negative_log_likelihood(logits, labels, t)  # noqa: E731
    assert at(best) < at(best * 1.03) and at(best) < at(best / 1.03)


def test_temperature_scaling_never_changes_an_answer():
    logits, labels = noisy_logits(scale=10.0, noise=0.3, n=300)
    summary = calibration_summary(logits, labels, fit_temperature(logits, labels), bins=15)
    accuracy = lambda when: sum(  # noqa: E731
        r["accuracy"] * r["count"] for r in summary[f"reliability_{when}"] if r["count"]
    )
    assert accuracy("after") == pytest.approx(accuracy("before"))
    assert accuracy("before") == pytest.approx((logits.argmax(-1) == labels).sum())


def test_an_empty_validation_split_is_a_clear_error():
    with pytest.raises(FinetuneError, match="validation split is empty"):
        fit_temperature(np.zeros((0, 2)), np.zeros(0, dtype=int))
