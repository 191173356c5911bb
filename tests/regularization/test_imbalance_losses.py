"""`loss:` class weights and focal loss: the training loss computed by hand on three examples."""

import math

import pytest
import torch
import torch.nn.functional as F

from finetune.recipe.regularization import RegularizationSection
from finetune.regularization.losses import (
    loss_terms,
    task_loss,
    weighted_binary_cross_entropy,
    weighted_cross_entropy,
)

LOGITS = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
LABELS = torch.tensor([0, 1, 1])
# cross-entropy of each example: -log softmax(true class) = log(1 + e^-(margin))
CE = [math.log(1 + math.exp(-2)), math.log(1 + math.exp(-1)), math.log(2)]
P_TRUE = [1 / (1 + math.exp(-2)), 1 / (1 + math.exp(-1)), 0.5]


def test_class_weights_multiply_each_examples_loss_and_average_over_examples():
    loss = task_loss(LOGITS, LABELS, "classification", weights=torch.tensor([0.5, 2.0]))
    by_hand = (0.5 * CE[0] + 2.0 * CE[1] + 2.0 * CE[2]) / 3
    assert loss.item() == pytest.approx(by_hand, rel=1e-6)
    assert by_hand != pytest.approx(sum(CE) / 3)  # the weights changed the loss


def test_a_batch_of_one_class_still_feels_its_weight():
    # F.cross_entropy(weight=...) divides by the batch's weights and would give the plain CE here
    loss = task_loss(LOGITS[1:], LABELS[1:], "classification", weights=torch.tensor([1.0, 3.0]))
    assert loss.item() == pytest.approx(3 * (CE[1] + CE[2]) / 2, rel=1e-6)


def test_focal_gamma_0_is_cross_entropy_and_gamma_2_the_papers_formula():
    plain = F.cross_entropy(LOGITS, LABELS)
    assert weighted_cross_entropy(LOGITS, LABELS, focal_gamma=0.0).item() == pytest.approx(plain.item())
    focal = task_loss(LOGITS, LABELS, "classification", focal_gamma=2.0)
    by_hand = sum((1 - p) ** 2 * ce for p, ce in zip(P_TRUE, CE)) / 3
    assert focal.item() == pytest.approx(by_hand, rel=1e-6)
    assert focal.item() < plain.item() / 4  # easy examples count much less


def test_focal_with_weights_and_label_smoothing_multiplies_the_smoothed_loss():
    loss = task_loss(LOGITS, LABELS, "classification", 0.2, torch.tensor([2.0, 1.0]), 1.0)
    log_p = LOGITS.log_softmax(-1)
    smoothed = [0.8 * ce - 0.2 * log_p[i].mean().item() for i, ce in enumerate(CE)]
    by_hand = sum(w * (1 - p) * s for w, p, s in zip([2.0, 1.0, 1.0], P_TRUE, smoothed)) / 3
    assert loss.item() == pytest.approx(by_hand, rel=1e-6)


def test_token_classification_skips_unlabelled_sub_words():
    logits = torch.stack([LOGITS, LOGITS])  # 2 sentences x 3 sub-words
    labels = torch.tensor([[0, -100, 1], [-100, 1, -100]])
    loss = task_loss(logits, labels, "token_classification", weights=torch.tensor([0.5, 2.0]))
    assert loss.item() == pytest.approx((0.5 * CE[0] + 2 * CE[2] + 2 * CE[1]) / 3, rel=1e-6)


def test_multi_label_weights_are_bce_positive_weights_and_focal_is_per_label():
    logits = torch.tensor([[2.0, -1.0], [0.0, 1.0], [-1.0, 0.5]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    weights = torch.tensor([3.0, 0.5])
    expected = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=weights)
    assert task_loss(logits, targets, "multi_label", weights=weights).item() == pytest.approx(expected.item())
    p = torch.sigmoid(logits)
    focal = -(targets * (1 - p) ** 2 * p.log() + (1 - targets) * p**2 * (1 - p).log()).mean()
    assert weighted_binary_cross_entropy(logits, targets, None, 2.0).item() == pytest.approx(focal.item())


class Outputs:
    def __init__(self, logits):
        self.logits = logits


def test_the_validation_loss_stays_the_plain_task_loss():
    model = torch.nn.Linear(1, 1)
    inputs, outputs = {"labels": LABELS}, Outputs(LOGITS)
    shaping = {"weights": torch.tensor([0.5, 2.0]), "focal_gamma": 2.0}
    spec = RegularizationSection()
    training = loss_terms(spec, "classification", model.train(), inputs, outputs, **shaping)["task"]
    validation = loss_terms(spec, "classification", model.eval(), inputs, outputs, **shaping)["task"]
    assert validation.item() == pytest.approx(sum(CE) / 3)
    assert training.item() != pytest.approx(validation.item())
