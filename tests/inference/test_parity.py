"""The parity figures of `finetune export`, on logits written by hand: differences, agreement, gates."""

from types import SimpleNamespace

import numpy as np
import pytest

from finetune.inference.parity import compare


def predictor(task, threshold=0.5):
    return SimpleNamespace(task=task, threshold=threshold, words=task == "token_classification")


def rows(*values):
    return [np.asarray(v, dtype=np.float32) for v in values]


def test_classification_difference_and_agreement_by_hand():
    reference = rows([2.0, 1.0], [0.0, 1.0], [1.0, 1.0005])
    exported = rows([2.0, 1.0], [0.0, 1.25], [1.001, 1.0])  # the third flips: a near tie
    result = compare(predictor("classification"), {}, reference, exported, "model.onnx", 1e-3, "max_abs_diff")
    assert result.max_abs_diff == pytest.approx(0.25)
    assert result.mean_abs_diff == pytest.approx((0.25 + 0.001 + 0.0005) / 6, rel=1e-3)
    assert (result.agreeing, result.compared) == (2, 3)
    assert result.agreement == pytest.approx(2 / 3)
    assert not result.passed  # 0.25 > 1e-3
    assert "FAILED" in result.line() and "tolerance 0.001" in result.line()


def test_fp32_gate_holds_at_the_tolerance_and_int8_gate_reads_agreement():
    reference = rows([2.0, 1.0], [0.0, 1.0], [3.0, 1.0], [1.0, 0.0])
    exported = rows([2.0005, 1.0], [0.0, 1.0], [3.0, 1.0], [0.4, 0.6])  # the last one flips
    fp32 = compare(predictor("classification"), {}, reference[:3], exported[:3], "m", 1e-3, "max_abs_diff")
    assert fp32.passed and fp32.max_abs_diff == pytest.approx(5e-4, rel=1e-3)
    int8 = compare(predictor("classification"), {}, reference, exported, "m8", 0.75, "agreement")
    assert int8.agreement == 0.75 and int8.passed
    stricter = compare(predictor("classification"), {}, reference, exported, "m8", 0.99, "agreement")
    assert not stricter.passed and "at least 99.00% required: FAILED" in stricter.line()


def test_multi_label_agrees_only_when_the_whole_label_set_is_the_same():
    # sigmoid(0) = 0.5 is not above the threshold 0.5; sigmoid(0.1) is
    reference = rows([2.0, -2.0, 0.0], [1.0, 1.0, -1.0])
    exported = rows([2.0, -2.0, 0.1], [1.2, 0.8, -1.5])
    result = compare(predictor("multi_label"), {}, reference, exported, "m8", 0.99, "agreement")
    assert (result.agreeing, result.compared) == (1, 2)
    raised = compare(predictor("multi_label", 0.6), {}, reference, exported, "m8", 0.99, "agreement")
    assert raised.agreeing == 2  # sigmoid(0.1) = 0.525: no label either way at 0.6


def test_regression_agrees_within_a_tenth_of_the_spread_of_the_scores():
    reference = rows([1.0], [2.0], [3.0], [4.0])  # std 1.118: agreement within 0.1118
    exported = rows([1.1], [2.2], [3.0], [4.0])
    result = compare(predictor("regression"), {}, reference, exported, "m8", 0.5, "agreement")
    assert (result.agreeing, result.compared) == (3, 4)
    assert result.max_abs_diff == pytest.approx(0.2, rel=1e-5)


def test_constant_regression_scores_fall_back_to_the_tolerance():
    reference = rows([2.0], [2.0])
    exported = rows([2.0005], [2.01])
    result = compare(predictor("regression"), {}, reference, exported, "m", 1e-3, "max_abs_diff")
    assert result.agreeing == 1


def test_token_classification_compares_every_token_but_agrees_on_first_sub_words():
    # two sentences of 3 and 2 tokens; words start at tokens 1 and 2, and 1 (-1: cut off)
    reference = rows([[1, 0], [3, 0], [0, 1]], [[1, 0], [0, 2]])
    exported = rows([[1, 0], [3, 0], [2, 1]], [[0, 5], [0, 2]])  # token 0 of sentence 2 is no word start
    encoded = {"word_starts": [[1, 2], [1, -1]]}
    result = compare(
        predictor("token_classification"), encoded, reference, exported, "m", 1e-3, "max_abs_diff"
    )
    assert (result.agreeing, result.compared) == (2, 3)  # word 2 of sentence 1 flips to tag 0
    assert result.max_abs_diff == 5.0 and result.texts == 2
    assert result.mean_abs_diff == pytest.approx((2 + 1 + 5) / 10)  # 10 logits: 5 tokens x 2 tags


def test_a_nan_logit_never_passes():
    reference = rows([1.0, 0.0])
    exported = rows([np.nan, 0.0])
    result = compare(predictor("classification"), {}, reference, exported, "m", 1e-3, "max_abs_diff")
    assert not result.passed
