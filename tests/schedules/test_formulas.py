"""LR schedules: the LR at chosen steps equals the closed-form formula (and torch's or transformers'
own scheduler where one exists), every group scales, groups may join mid-run, the state resumes, and
the Trainer logs the planned LR per optimizer step under gradient accumulation."""

import io
import json
import math

import pytest
import torch
from torch.optim import lr_scheduler as torch_schedulers
from transformers import (
    get_inverse_sqrt_schedule,
    get_polynomial_decay_schedule_with_warmup,
    get_wsd_schedule,
)

from finetune.errors import RecipeError
from finetune.recipe import load_recipe, validate_recipe
from finetune.recipe.schedule import ScheduleSection
from finetune.schedules.formulas import build_scheduler, lr_curve, warmup_steps


def lrs_from_scheduler(spec, total, peak=1e-3, steps_per_epoch=None):
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=peak)
    scheduler = build_scheduler(optimizer, spec, total, steps_per_epoch)
    lrs = []
    for _ in range(total):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def oracle(make, total, peak=1.0):
    """LRs of a torch/transformers scheduler over `total` optimizer steps."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=peak)
    scheduler = make(optimizer)
    lrs = []
    for _ in range(total):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def check(spec_or_lrs, formula, steps, total=100, peak=1.0, steps_per_epoch=None):
    lrs = (
        spec_or_lrs if isinstance(spec_or_lrs, list) else lr_curve(spec_or_lrs, total, peak, steps_per_epoch)
    )
    for step in steps:
        assert lrs[step] == pytest.approx(formula(step), abs=1e-12), step


# --- warmup ---


def test_warmup_then_linear_decay_matches_formula():
    total, peak = 100, 1e-3
    spec = ScheduleSection(name="linear", warmup_ratio=0.1)
    assert warmup_steps(spec, total) == 10
    lrs = lrs_from_scheduler(spec, total, peak)
    formula = lambda s: peak * s / 10 if s < 10 else peak * (total - s) / (total - 10)  # noqa: E731
    check(lrs, formula, (0, 1, 5, 9, 10, 11, 50, 99))
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


def test_exponential_warmup_grows_geometrically_from_its_start():
    spec = ScheduleSection(name="constant", warmup_steps=4, warmup_type="exponential", warmup_start=0.001)
    check(spec, lambda s: 0.001 ** (1 - s / 4) if s < 4 else 1.0, range(8), total=8)
    lrs = lr_curve(spec, 8, 1.0)
    assert lrs[1] / lrs[0] == pytest.approx(lrs[2] / lrs[1])  # a constant ratio per step
    default = lr_curve(ScheduleSection(name="constant", warmup_steps=2, warmup_type="exponential"), 4, 1.0)
    assert default[0] == pytest.approx(0.01)


def test_linear_warmup_can_start_above_zero():
    check(
        ScheduleSection(name="constant", warmup_steps=4, warmup_start=0.2),
        lambda s: 0.2 + 0.8 * s / 4,
        range(4),
    )


def test_warmup_multiplies_a_schedule_that_starts_below_peak():
    # multistep with a milestone inside the warmup: warmup ramps to the schedule's value
    spec = ScheduleSection(name="multistep", milestones=[2], gamma=0.5, warmup_steps=4)
    check(spec, lambda s: (s / 4 if s < 4 else 1.0) * (0.5 if s >= 2 else 1.0), range(8), total=8)


# --- every schedule against its closed form ---


def test_constant_with_warmup():
    lrs = lr_curve(ScheduleSection(name="constant", warmup_steps=2), 10, 1.0)
    assert lrs == pytest.approx([0.0, 0.5] + [1.0] * 8)


def test_linear_decays_to_min_lr():
    spec = ScheduleSection(name="linear", warmup_steps=10, min_lr=0.1)
    check(spec, lambda s: s / 10 if s < 10 else 0.1 + 0.9 * (100 - s) / 90, (0, 5, 10, 40, 99), peak=1.0)


def test_cosine_to_min_lr_matches_formula_and_torch():
    spec = ScheduleSection(name="cosine", min_lr=0.1)
    check(spec, lambda s: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / 100)), (0, 25, 50, 99))
    expected = oracle(lambda o: torch_schedulers.CosineAnnealingLR(o, 100, eta_min=0.1), 100)
    assert lr_curve(spec, 100, 1.0) == pytest.approx(expected, abs=1e-12)


def test_cosine_with_warmup_starts_decay_after_warmup():
    spec = ScheduleSection(name="cosine", warmup_ratio=0.1)
    formula = lambda s: s / 10 if s < 10 else 0.5 * (1 + math.cos(math.pi * (s - 10) / 90))  # noqa: E731
    check(spec, formula, (0, 9, 10, 55, 99))
    assert lr_curve(spec, 100, 1.0)[55] == pytest.approx(0.5)


def test_min_lr_is_absolute_for_the_base_lr():
    lrs = lr_curve(ScheduleSection(name="cosine", min_lr=1e-6), 50, 1e-4)
    assert min(lrs) >= 1e-6
    assert lrs[49] == pytest.approx(1e-6 + (1e-4 - 1e-6) * 0.5 * (1 + math.cos(math.pi * 49 / 50)))


def test_cosine_restarts_matches_sgdr_formula_and_torch():
    spec = ScheduleSection(name="cosine_restarts", period=10, cycle_mult=2, min_lr=0.05)
    expected = oracle(lambda o: torch_schedulers.CosineAnnealingWarmRestarts(o, 10, 2, eta_min=0.05), 100)
    assert lr_curve(spec, 100, 1.0) == pytest.approx(expected, abs=1e-12)
    # cycles of 10, 20, 40 steps: restarts at 10, 30, 70
    for restart in (0, 10, 30, 70):
        assert lr_curve(spec, 100, 1.0)[restart] == pytest.approx(1.0)
    cos = lambda pos, length: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * pos / length))  # noqa: E731
    check(spec, lambda s: cos(s - 30, 40) if s >= 30 else None, (45, 69))


def test_cosine_restarts_with_warmup_and_epochs():
    spec = ScheduleSection(name="cosine_restarts", period=1, unit="epochs", warmup_steps=5)
    # 20 steps per epoch: cycles of 20 steps starting after the 5 warmup steps
    formula = lambda s: s / 5 if s < 5 else 0.5 * (1 + math.cos(math.pi * ((s - 5) % 20) / 20))  # noqa: E731
    check(spec, formula, (0, 4, 5, 15, 24, 25, 26, 59), total=60, steps_per_epoch=20)


def test_step_decay_matches_torch_and_counts_epochs():
    spec = ScheduleSection(name="step", period=7, gamma=0.5)
    assert lr_curve(spec, 50, 1.0) == pytest.approx(oracle(lambda o: torch_schedulers.StepLR(o, 7, 0.5), 50))
    by_epoch = ScheduleSection(name="step", period=2, unit="epochs")
    check(by_epoch, lambda s: 0.1 ** (s // 20), (0, 19, 20, 39, 40, 59), total=60, steps_per_epoch=10)


def test_multistep_matches_torch():
    spec = ScheduleSection(name="multistep", milestones=[10, 30, 31], gamma=0.5)
    expected = oracle(lambda o: torch_schedulers.MultiStepLR(o, [10, 30, 31], 0.5), 50)
    assert lr_curve(spec, 50, 1.0) == pytest.approx(expected)
    in_epochs = ScheduleSection(name="multistep", milestones=[1.5, 3], unit="epochs")
    check(in_epochs, lambda s: 0.1 ** ((s >= 15) + (s >= 30)), (14, 15, 29, 30), total=40, steps_per_epoch=10)


def test_exponential_matches_torch_and_decays_per_epoch():
    spec = ScheduleSection(name="exponential", gamma=0.97)
    expected = oracle(lambda o: torch_schedulers.ExponentialLR(o, 0.97), 50)
    assert lr_curve(spec, 50, 1.0) == pytest.approx(expected)
    per_epoch = ScheduleSection(name="exponential", gamma=0.5, unit="epochs", warmup_steps=4)
    check(
        per_epoch,
        lambda s: s / 4 if s < 4 else 0.5 ** ((s - 4) / 10),
        (2, 4, 9, 14, 24),
        total=30,
        steps_per_epoch=10,
    )


def test_polynomial_matches_transformers():
    spec = ScheduleSection(name="polynomial", warmup_steps=10, power=2, min_lr=0.01)
    expected = oracle(
        lambda o: get_polynomial_decay_schedule_with_warmup(o, 10, 100, lr_end=0.01, power=2), 100
    )
    assert lr_curve(spec, 100, 1.0) == pytest.approx(expected, abs=1e-12)
    check(spec, lambda s: 0.01 + 0.99 * (1 - (s - 10) / 90) ** 2 if s >= 10 else s / 10, (0, 10, 40, 99))


def test_inverse_sqrt_matches_vaswani_and_transformers():
    spec = ScheduleSection(name="inverse_sqrt", warmup_steps=10)
    expected = oracle(lambda o: get_inverse_sqrt_schedule(o, 10), 100)
    assert lr_curve(spec, 100, 1.0) == pytest.approx(expected, abs=1e-12)
    check(spec, lambda s: min(s / 10, math.sqrt(10 / s)) if s else 0.0, (0, 5, 10, 40, 99))


@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
def test_cyclic_matches_torch(mode):
    gamma = 0.99 if mode == "exp_range" else None
    spec = ScheduleSection(name="cyclic", period=20, min_lr=0.1, mode=mode, gamma=gamma)
    expected = oracle(
        lambda o: torch_schedulers.CyclicLR(
            o, 0.1, 1.0, step_size_up=10, mode=mode, gamma=gamma or 1.0, cycle_momentum=False
        ),
        100,
    )
    assert lr_curve(spec, 100, 1.0) == pytest.approx(expected, abs=1e-12)


def test_cyclic_triangle_formula():
    spec = ScheduleSection(name="cyclic", period=20, min_lr=0.2, mode="triangular2")
    # up over 10 steps, down over 10; the second cycle has half the amplitude
    check(spec, lambda s: {0: 0.2, 5: 0.6, 10: 1.0, 15: 0.6, 20: 0.2, 30: 0.6}[s], (0, 5, 10, 15, 20, 30))


@pytest.mark.parametrize("anneal", ["cos", "linear"])
def test_one_cycle_matches_torch(anneal):
    spec = ScheduleSection(
        name="one_cycle", warmup_ratio=0.25, anneal=anneal, div_factor=10, final_div_factor=100
    )
    expected = oracle(
        lambda o: torch_schedulers.OneCycleLR(
            o,
            1.0,
            total_steps=100,
            pct_start=0.25,
            anneal_strategy=anneal,
            div_factor=10,
            final_div_factor=100,
            cycle_momentum=False,
        ),
        100,
    )
    assert lr_curve(spec, 100, 1.0) == pytest.approx(expected, abs=1e-12)


def test_one_cycle_defaults_and_formula():
    spec = ScheduleSection(name="one_cycle")  # 30% rise, from 1/25 to 1, down to 1/25/1e4
    expected = oracle(
        lambda o: torch_schedulers.OneCycleLR(o, 1.0, total_steps=100, cycle_momentum=False), 100
    )
    assert lr_curve(spec, 100, 1.0) == pytest.approx(expected, abs=1e-12)
    rise_end = 0.3 * 100 - 1
    up = lambda s: 1 + (1 / 25 - 1) / 2 * (math.cos(math.pi * s / rise_end) + 1)  # noqa: E731
    check(spec, lambda s: up(s) if s <= rise_end else None, (0, 10, 29))
    assert lr_curve(spec, 100, 1.0)[99] == pytest.approx(1 / 25 / 1e4)


def test_slanted_triangular_matches_ulmfit_formula():
    total, cut_frac, ratio = 1000, 0.1, 32
    cut = math.floor(total * cut_frac)

    def stlr(t):  # Howard & Ruder 2018, eq. 3
        p = t / cut if t < cut else 1 - (t - cut) / (cut * (1 / cut_frac - 1))
        return (1 + p * (ratio - 1)) / ratio

    check(ScheduleSection(name="slanted_triangular"), stlr, (0, 50, 99, 100, 101, 500, 999), total=total)
    custom = ScheduleSection(name="slanted_triangular", warmup_ratio=0.2, min_lr=0.1)
    check(custom, lambda t: 0.1 + 0.9 * (t / 20 if t < 20 else 1 - (t - 20) / 80), (0, 10, 20, 60, 99))


@pytest.mark.parametrize("shape", ["linear", "cosine", "1-sqrt"])
def test_wsd_matches_transformers(shape):
    spec = ScheduleSection(name="wsd", warmup_steps=10, decay_ratio=0.2, decay_shape=shape)
    expected = oracle(lambda o: get_wsd_schedule(o, 10, 20, 100, decay_type=shape), 100)
    assert lr_curve(spec, 100, 1.0) == pytest.approx(expected, abs=1e-12)
    lrs = lr_curve(spec, 100, 1.0)
    assert lrs[10:80] == pytest.approx([1.0] * 70)  # the stable phase


def test_wsd_decays_to_min_lr():
    spec = ScheduleSection(name="wsd", decay_ratio=0.5, min_lr=0.2)
    check(spec, lambda s: 1.0 if s < 50 else 0.2 + 0.8 * (1 - (s - 50) / 50), (0, 49, 50, 75, 99))


# --- the scheduler: groups, plateau, state ---


def test_every_group_scales_with_the_schedule():
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([{"params": [a], "lr": 1e-3}, {"params": [b], "lr": 1e-4}], lr=1e-3)
    scheduler = build_scheduler(optimizer, ScheduleSection(name="cosine", warmup_steps=2), 10)
    factors = lr_curve(ScheduleSection(name="cosine", warmup_steps=2), 10, 1.0)
    for step in range(10):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * factors[step])
        assert optimizer.param_groups[1]["lr"] == pytest.approx(1e-4 * factors[step])
        optimizer.step()
        scheduler.step()


def test_a_group_added_mid_run_is_scheduled_before_its_first_step():
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([a], lr=1.0)
    scheduler = build_scheduler(optimizer, ScheduleSection(name="linear"), 10)
    for _ in range(4):
        optimizer.step()
        scheduler.step()
    optimizer.add_param_group({"params": [b], "lr": 0.5})  # e.g. gradual unfreezing, peak 0.5
    seen = []
    optimizer.register_step_post_hook(lambda opt, args, kwargs: seen.append(opt.param_groups[1]["lr"]))
    optimizer.step()  # its first step: already at 0.5 x factor(4), not at 0.5
    assert seen == [pytest.approx(0.5 * 6 / 10)]
    scheduler.step()
    assert optimizer.param_groups[1]["lr"] == pytest.approx(0.5 * 5 / 10)
    assert scheduler.get_last_lr() == pytest.approx([0.5, 0.25])


def test_scheduler_state_is_picklable_and_resumes_the_same_curve():
    spec = ScheduleSection(name="one_cycle")
    first = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(first, spec, 50)
    for _ in range(20):
        first.step()
        scheduler.step()
    buffer = io.BytesIO()
    torch.save(scheduler.state_dict(), buffer)
    buffer.seek(0)
    second = torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))], "initial_lr": 1.0}], lr=1.0)
    resumed = build_scheduler(second, spec, 50)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))  # as the Trainer loads it
    second.step()
    resumed.step()
    scheduler.step()
    assert resumed.get_last_lr() == pytest.approx(scheduler.get_last_lr())
    assert resumed.last_epoch == 21


def test_plateau_cuts_after_patience_and_respects_the_floor():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    spec = ScheduleSection(name="plateau", warmup_steps=2, patience=1, gamma=0.5, min_lr=3e-4)
    scheduler = build_scheduler(optimizer, spec, 100, greater_is_better=True)
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
    lrs = []
    for accuracy in (0.80, 0.79, 0.80, 0.81, 0.70, 0.70, 0.70, 0.70):
        scheduler.observe(accuracy)  # the cut takes effect at once, for the next optimizer step
        lrs.append(optimizer.param_groups[0]["lr"])
    # best 0.80; two evaluations without improvement (patience 1) -> x0.5; 0.81 improves; then cuts to the floor
    assert lrs == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4, 5e-4, 3e-4, 3e-4, 3e-4])
    buffer = io.BytesIO()
    torch.save(scheduler.state_dict(), buffer)  # the plateau state travels in checkpoints
    buffer.seek(0)
    fresh = build_scheduler(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3), spec, 100)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    fresh.refresh()
    assert fresh.get_last_lr() == pytest.approx([3e-4])


def test_plateau_lower_is_better_for_loss():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(
        optimizer, ScheduleSection(name="plateau", patience=0), 10, greater_is_better=False
    )
    scheduler.observe(0.5)
    scheduler.observe(0.4)  # lower loss: better
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1.0)
    scheduler.observe(0.45)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)


# --- the schema ---


def test_key_of_another_schedule_is_an_error_naming_it():
    with pytest.raises(RecipeError) as error:
        load_recipe("cosine", ["schedule.power=2"])
    assert "schedule.power: does not apply to schedule `cosine` (only to `polynomial`)" in str(error.value)


def test_missing_and_contradictory_schedule_keys():
    with pytest.raises(RecipeError, match="schedule `step` needs `schedule.period`"):
        load_recipe("base", ["schedule.name=step"])
    with pytest.raises(RecipeError, match="not both"):
        load_recipe("base", ["schedule.warmup_steps=5"])  # base.yaml sets warmup_ratio
    with pytest.raises(RecipeError, match="schedule.min_lr: 0.001 must be below optimizer.lr"):
        load_recipe("cosine", ["schedule.min_lr=1e-3", "optimizer.lr=2e-5"])
    with pytest.raises(RecipeError, match="must be whole"):
        load_recipe("base", ["schedule.name=step", "schedule.period=1.5"])
    with pytest.raises(RecipeError, match="schedule.warmup_type: does not apply to schedule `one_cycle`"):
        load_recipe("one-cycle", ["schedule.warmup_type=exponential"])


def test_plateau_patience_must_leave_room_before_early_stopping():
    with pytest.raises(RecipeError, match="early stopping ends the run at evaluation 3"):
        load_recipe("base", ["schedule.name=plateau", "schedule.patience=2"])
    assert load_recipe("base", ["schedule.name=plateau"]).schedule.name == "plateau"


def test_resolved_recipe_with_every_key_validates_again():
    recipe = load_recipe("warm-restarts")
    again = validate_recipe(recipe.to_yaml_dict())
    assert again.schedule == recipe.schedule


def test_epoch_units_without_steps_per_epoch_say_what_is_missing():
    from finetune.errors import FinetuneError

    with pytest.raises(FinetuneError, match="steps per epoch is unknown"):
        lr_curve(ScheduleSection(name="step", period=1, unit="epochs"), 10, 1.0)


# --- through the real Trainer ---


def logged_lrs(run_dir):
    lines = (json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines())
    return {r["step"]: r["learning_rate"] for r in lines if "learning_rate" in r}


def test_trainer_logs_the_planned_lr_of_every_optimizer_step_with_accumulation(tiny_recipe):
    from finetune.training.run import train

    tiny_recipe["schedule"] = {"name": "cosine_restarts", "warmup_steps": 2, "unit": "epochs", "period": 1}
    tiny_recipe["training"].update(batch_size=4, gradient_accumulation_steps=3, epochs=2)
    tiny_recipe["output"].update(plots=False, save_model=False)
    tiny_recipe["checkpoints"] = {"every_epoch": False}  # no checkpoint writing: faster
    recipe = validate_recipe(tiny_recipe)
    result = train(recipe)
    # 48 rows / 4 = 12 micro-batches per epoch / 3 = 4 optimizer steps per epoch, 8 in all
    assert result.results["steps"] == 8
    planned = lr_curve(recipe.schedule, 8, recipe.optimizer.lr, steps_per_epoch=4)
    logged = logged_lrs(result.run_dir)
    assert sorted(logged) == list(range(1, 9))
    for step, lr in logged.items():  # the LR logged at step s is the one step s used
        assert lr == pytest.approx(planned[step - 1]), step
    assert logged[3] == pytest.approx(1e-3)  # a restart: each epoch-long cycle begins at the peak


def test_plateau_cuts_the_lr_after_evaluations_without_improvement(tiny_recipe):
    from finetune.training.run import train

    # a relative threshold of 50%: no evaluation after the first counts as an improvement
    tiny_recipe["schedule"] = {"name": "plateau", "patience": 0, "gamma": 0.5, "threshold": 0.5}
    tiny_recipe["early_stopping"] = {"metric": "loss", "enabled": False}
    tiny_recipe["training"].update(epochs=3)
    tiny_recipe["output"].update(plots=False, save_model=False)
    tiny_recipe["checkpoints"] = {"every_epoch": False}  # no checkpoint writing: faster
    result = train(validate_recipe(tiny_recipe))
    logged = logged_lrs(result.run_dir)
    # 6 steps per epoch, evaluation at every epoch end: the first sets the best, the next cuts
    assert [logged[s] for s in (1, 6, 7, 12, 13, 18)] == pytest.approx([1e-3] * 4 + [5e-4] * 2)


# --- finetune plot-schedule ---


def test_plot_schedule_prints_key_steps_and_writes_a_png(tmp_path, capsys):
    from finetune.cli import main

    out = tmp_path / "cosine.png"
    assert main(["plot-schedule", "cosine", "--steps", "100", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.stat().st_size > 10_000
    curve = lr_curve(load_recipe("cosine").schedule, 100, 8e-5)  # optimizer.lr: auto, for MiniLM
    assert "optimizer.lr: auto -> 8e-05 (bert: 6 layers, hidden 384" in printed
    assert "warmup end (step 10)  middle (step 50)  end (step 99)" in printed
    row = next(line for line in printed.splitlines() if line.startswith("all parameters")).split()
    assert [float(v) for v in row[2:]] == pytest.approx([curve[10], curve[50], curve[99]], rel=1e-3)


def test_plot_schedule_counts_training_rows_without_loading_them(tiny_recipe, tmp_path):
    from finetune.schedules.plot import run_length

    recipe = validate_recipe(tiny_recipe)  # 48 rows, batch 8, 2 epochs: the Trainer plans 12 steps
    length = run_length(recipe)
    assert (length.total, length.steps_per_epoch) == (12, 6)
    tiny_recipe["training"].update(gradient_accumulation_steps=4)  # 6 batches -> 2 optimizer steps
    assert run_length(validate_recipe(tiny_recipe)).total == 4
    tiny_recipe["data"].pop("validation")  # 10% held out: 43 rows for training
    assert run_length(validate_recipe(tiny_recipe)).steps_per_epoch == 2
    from finetune.errors import FinetuneError

    with pytest.raises(FinetuneError, match="give --steps N"):
        run_length(load_recipe("cosine"))


def test_plot_schedule_draws_one_curve_per_layer_lr(tmp_path):
    from finetune.schedules.plot import RunLength, group_peaks, schedule_curves
    from finetune.training.defaults import resolve_for_planning

    # minilm-l6: 6 layers, decay 0.9, head at `lr: auto`, resolved as plot-schedule does: 8e-5
    recipe = resolve_for_planning(load_recipe("llrd"), train_examples=None).recipe
    peaks = group_peaks(recipe)
    assert peaks["pooler, head"] == pytest.approx(8e-5)
    assert peaks["layer.0"] == pytest.approx(8e-5 * 0.9**6) and peaks["embeddings"] == pytest.approx(
        8e-5 * 0.9**7
    )
    curves = schedule_curves(recipe, RunLength(50, None, "test"))
    assert len(curves) == 8
    ratio = [a / b for a, b in zip(curves["layer.0"][1:], curves["pooler, head"][1:])]
    assert ratio == pytest.approx([0.9**6] * 49)  # every group follows the same schedule
