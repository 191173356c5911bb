"""LR schedules: the LR at chosen steps equals the closed-form formula."""

import pytest
import torch

from finetune.recipe.schedule import ScheduleSection
from finetune.schedules import build_scheduler, lr_curve, warmup_steps


def lrs_from_scheduler(spec, total, peak=1e-3):
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=peak)
    scheduler = build_scheduler(optimizer, spec, total)
    lrs = []
    for _ in range(total):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_warmup_then_linear_decay_matches_formula():
    total, peak = 100, 1e-3
    spec = ScheduleSection(name="linear", warmup_ratio=0.1)
    assert warmup_steps(spec, total) == 10
    lrs = lrs_from_scheduler(spec, total, peak)
    formula = lambda s: peak * s / 10 if s < 10 else peak * (total - s) / (total - 10)  # noqa: E731
    for step in (0, 1, 5, 9, 10, 11, 50, 99):
        assert lrs[step] == pytest.approx(formula(step), abs=1e-12), step
    assert lrs[10] == pytest.approx(peak)
    assert lrs[55] == pytest.approx(peak * 0.5)


def test_warmup_in_steps():
    spec = ScheduleSection(name="linear", warmup_steps=4)
    lrs = lr_curve(spec, 20, 1.0)
    assert lrs[:5] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert lrs[12] == pytest.approx((20 - 12) / 16)


def test_warmup_ratio_rounds_up():
    assert warmup_steps(ScheduleSection(warmup_ratio=0.06), 50) == 3  # 3.0
    assert warmup_steps(ScheduleSection(warmup_ratio=0.05), 50) == 3  # 2.5 -> 3


def test_no_warmup_starts_at_peak():
    lrs = lr_curve(ScheduleSection(name="linear"), 10, 2.0)
    assert lrs[0] == 2.0 and lrs[5] == pytest.approx(1.0)


def test_constant_with_warmup():
    lrs = lr_curve(ScheduleSection(name="constant", warmup_steps=2), 10, 1.0)
    assert lrs == pytest.approx([0.0, 0.5] + [1.0] * 8)
