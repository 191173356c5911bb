"""The distillation term of the training loss (`distill:`), against values computed by hand."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from finetune.recipe.distill import DistillSection
from finetune.recipe.regularization import RegularizationSection
from finetune.regularization.losses import distillation_loss, loss_terms


def softmax(row: list[float]) -> list[float]:
    exps = [math.exp(x) for x in row]
    return [e / sum(exps) for e in exps]


def kl(p: list[float], q: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q))


@pytest.mark.parametrize("task, width", [("classification", 3), ("multi_label", 4), ("regression", 1)])
@pytest.mark.parametrize("temperature", [1.0, 2.0, 5.0])
def test_the_term_is_exactly_zero_when_the_student_equals_the_teacher(task, width, temperature):
    torch.manual_seed(0)
    logits = torch.randn(8, width) * 3
    assert distillation_loss(logits.clone(), logits.clone(), task, temperature).item() == 0.0
    assert distillation_loss(logits + torch.randn_like(logits), logits, task, temperature).item() > 0


def test_classification_term_is_hintons_kl_times_t_squared_averaged_over_examples():
    student = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    teacher = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    # T = 2: softened distributions are the softmax of the logits halved
    by_hand = (
        (kl(softmax([1.0, 0.0]), softmax([0.5, 0.0])) + kl(softmax([0.0, 0.0]), softmax([0.0, 1.0]))) / 2 * 4
    )
    assert distillation_loss(student, teacher, "classification", 2.0).item() == pytest.approx(
        by_hand, rel=1e-6
    )
    # T = 1: no softening, no scaling
    plain = (kl(softmax([2.0, 0.0]), softmax([1.0, 0.0])) + kl(softmax([0.0, 0.0]), softmax([0.0, 2.0]))) / 2
    assert distillation_loss(student, teacher, "classification", 1.0).item() == pytest.approx(plain, rel=1e-6)


def test_multi_label_term_is_the_bernoulli_kl_per_label_times_t_squared():
    student, teacher = torch.tensor([[0.0, 1.0]]), torch.tensor([[2.0, 1.0]])
    q = 1 / (1 + math.exp(-1.0))  # sigmoid(2 / T) with T = 2; the student's sigmoid(0 / 2) = 0.5
    first = q * math.log(q / 0.5) + (1 - q) * math.log((1 - q) / 0.5)
    by_hand = (first + 0.0) / 2 * 4  # the second label agrees: 0
    assert distillation_loss(student, teacher, "multi_label", 2.0).item() == pytest.approx(by_hand, rel=1e-6)


def test_regression_term_is_the_squared_difference_without_temperature():
    student, teacher = torch.tensor([[1.0], [3.0]]), torch.tensor([[2.0], [1.0]])
    for temperature in (1.0, 4.0):
        assert distillation_loss(student, teacher, "regression", temperature).item() == pytest.approx(2.5)


def terms(logits, labels, teacher, training=True, alpha=0.25, temperature=2.0, **regularization):
    model = torch.nn.Linear(1, 1).train(training)
    return loss_terms(
        RegularizationSection(**regularization),
        "classification",
        model,
        {"labels": labels},
        SimpleNamespace(logits=logits),
        teacher_logits=teacher,
        distill=DistillSection(teacher="t", alpha=alpha, temperature=temperature),
    )


def test_alpha_weighs_the_distillation_term_and_one_minus_alpha_the_task_term():
    student = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    teacher = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    labels = torch.tensor([0, 0])
    cross_entropy = -(math.log(softmax([1.0, 0.0])[0]) + math.log(softmax([0.0, 2.0])[0])) / 2
    divergence = (
        kl(softmax([1.0, 0.0]), softmax([0.5, 0.0])) + kl(softmax([0.0, 0.0]), softmax([0.0, 1.0]))
    ) * 2
    got = terms(student, labels, teacher)
    assert set(got) == {"task", "distill"}
    assert got["task"].item() == pytest.approx(0.75 * cross_entropy, rel=1e-6)
    assert got["distill"].item() == pytest.approx(0.25 * divergence, rel=1e-6)
    # alpha 1: the teacher alone
    assert terms(student, labels, teacher, alpha=1.0)["task"].item() == 0.0


def test_validation_loss_is_the_plain_task_loss():
    student, labels = torch.tensor([[1.0, 0.0]]), torch.tensor([1])
    got = terms(student, labels, torch.tensor([[0.0, 3.0]]), training=False)
    assert set(got) == {"task"}
    assert got["task"].item() == pytest.approx(-math.log(softmax([1.0, 0.0])[1]), rel=1e-6)


def test_with_rdrop_each_dropout_pass_is_compared_with_the_teacher():
    first, second = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    teacher = torch.tensor([[0.0, 0.0]])
    got = terms(torch.cat([first, second]), torch.tensor([0]), teacher, alpha=0.5, temperature=1.0, rdrop=1.0)
    each = kl(softmax([0.0, 0.0]), softmax([1.0, 0.0]))  # both passes are equally far from uniform
    assert got["distill"].item() == pytest.approx(0.5 * each, rel=1e-6)
    assert "rdrop" in got
