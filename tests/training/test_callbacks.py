"""Early stopping: patience counted in evaluations, min_delta, restoring the best weights."""

import torch
from conftest import tiny_bert
from transformers import TrainerControl, TrainerState, TrainingArguments

from finetune.training.callbacks import EarlyStopping


def evaluate(stopper, model, step, value, args, state, control, key="eval_accuracy"):
    state.global_step = step
    stopper.on_evaluate(args, state, control, metrics={key: value}, model=model)


def setup(tmp_path):
    return TrainingArguments(output_dir=str(tmp_path), report_to="none"), TrainerState(), TrainerControl()


def test_stops_after_patience_evaluations_without_improvement(tmp_path):
    args, state, control = setup(tmp_path)
    model = tiny_bert()
    stopper = EarlyStopping("accuracy", greater_is_better=True, patience=2)
    for step, value in [(10, 0.6), (20, 0.7), (30, 0.69)]:
        evaluate(stopper, model, step, value, args, state, control)
        assert not control.should_training_stop
    evaluate(stopper, model, 40, 0.7, args, state, control)  # equal is not better: patience runs out
    assert control.should_training_stop
    assert stopper.best == 0.7 and stopper.best_step == 40  # but the tie's later weights are kept
    assert "step 40" in stopper.stop_reason()


def test_restores_the_best_weights(tmp_path):
    args, state, control = setup(tmp_path)
    model = tiny_bert()
    stopper = EarlyStopping("loss", greater_is_better=False, patience=5)
    evaluate(stopper, model, 10, 0.5, args, state, control, key="eval_loss")
    best = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # training moves on ...
    evaluate(stopper, model, 20, 0.9, args, state, control, key="eval_loss")  # ... and gets worse
    stopper.on_train_end(args, state, control, model=model)
    assert stopper.restored
    for key, value in model.state_dict().items():
        assert torch.equal(value, best[key]), key


def test_min_delta_absolute_and_relative(tmp_path):
    args, state, control = setup(tmp_path)
    model = tiny_bert()
    absolute = EarlyStopping("accuracy", True, patience=1, min_delta=0.05)
    evaluate(absolute, model, 1, 0.80, args, state, control)
    evaluate(absolute, model, 2, 0.84, args, state, control)  # +0.04 < 0.05: not an improvement
    assert control.should_training_stop and absolute.best == 0.80

    args, state, control = setup(tmp_path)
    relative = EarlyStopping("accuracy", True, patience=1, min_delta=0.04, relative=True)
    evaluate(relative, model, 1, 0.50, args, state, control)
    evaluate(relative, model, 2, 0.519, args, state, control)  # needs > 0.52 (4% of 0.50)
    assert control.should_training_stop
    args, state, control = setup(tmp_path)
    evaluate(relative, model, 3, 0.53, args, state, control)
    assert relative.best == 0.53


def test_disabled_never_stops_but_still_tracks_best(tmp_path):
    args, state, control = setup(tmp_path)
    model = tiny_bert()
    stopper = EarlyStopping("accuracy", True, patience=1, enabled=False)
    for step, value in [(1, 0.9), (2, 0.5), (3, 0.4)]:
        evaluate(stopper, model, step, value, args, state, control)
    assert not control.should_training_stop and stopper.best_step == 1


def test_the_starting_weights_are_a_candidate_so_a_run_that_only_gets_worse_keeps_them(tmp_path):
    args, state, control = setup(tmp_path)
    model = tiny_bert()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    stopper = EarlyStopping("accuracy", True, patience=2)
    evaluate(stopper, model, 0, 0.7, args, state, control)  # before training
    assert stopper.best == 0.7 and stopper.best_step == 0 and stopper.evaluations_without_improvement == 0
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(50.0)  # a diverging LR wrecks the weights
    evaluate(stopper, model, 10, 0.5, args, state, control)
    evaluate(stopper, model, 20, 0.5, args, state, control)
    assert control.should_training_stop and stopper.best_step == 0
    stopper.on_train_end(args, state, control, model=model)
    assert stopper.restored
    assert all(torch.equal(v, start[k]) for k, v in model.state_dict().items())


def test_a_training_evaluation_must_beat_the_starting_weights(tmp_path):
    args, state, control = setup(tmp_path)
    stopper = EarlyStopping("accuracy", True, patience=3)
    evaluate(stopper, tiny_bert(), 0, 0.7, args, state, control)
    evaluate(stopper, tiny_bert(), 10, 0.69, args, state, control)
    assert stopper.best_step == 0 and stopper.evaluations_without_improvement == 1
    evaluate(stopper, tiny_bert(), 20, 0.8, args, state, control)
    assert stopper.best_step == 20 and stopper.evaluations_without_improvement == 0


def test_a_tie_never_displaces_the_starting_weights_but_a_later_tie_wins(tmp_path):
    args, state, control = setup(tmp_path)
    stopper = EarlyStopping("accuracy", True, patience=5)
    evaluate(stopper, tiny_bert(), 0, 0.5, args, state, control)  # before training, at chance
    evaluate(stopper, tiny_bert(), 10, 0.5, args, state, control)  # a diverged run, still at chance
    assert stopper.best_step == 0
    evaluate(stopper, tiny_bert(), 20, 0.8, args, state, control)
    evaluate(stopper, tiny_bert(), 30, 0.8, args, state, control)  # ties between training steps: later
    assert stopper.best_step == 30 and stopper.evaluations_without_improvement == 1


def test_a_non_finite_value_is_never_an_improvement(tmp_path):
    args, state, control = setup(tmp_path)
    model = tiny_bert()
    stopper = EarlyStopping("accuracy", True, patience=3)
    evaluate(stopper, model, 1, float("nan"), args, state, control)  # the first evaluation
    assert stopper.best is None and stopper.evaluations_without_improvement == 1
    evaluate(stopper, model, 2, 0.6, args, state, control)
    assert stopper.best == 0.6 and stopper.best_step == 2
    for step, value in [(3, float("nan")), (4, float("inf"))]:
        evaluate(stopper, model, step, value, args, state, control)
    assert stopper.best == 0.6 and stopper.evaluations_without_improvement == 2

    lower = EarlyStopping("loss", greater_is_better=False, patience=3)
    evaluate(lower, model, 1, 0.5, args, state, control, key="eval_loss")
    evaluate(lower, model, 2, float("-inf"), args, state, control, key="eval_loss")
    assert lower.best == 0.5


def test_the_console_line_keeps_per_class_recall_for_a_few_classes_only():
    from finetune.training.callbacks import format_metrics

    two = {
        "eval_loss": 0.5,
        "eval_accuracy": 0.75,
        "eval_recall_neg": 0.5,
        "eval_runtime": 1.0,
        "eval_recall_pos": 1.0,
    }
    assert format_metrics(two) == "loss 0.5000 | accuracy 0.7500 | recall_neg 0.5000 | recall_pos 1.0000"
    many = {"eval_accuracy": 0.5, **{f"eval_recall_c{i}": 0.5 for i in range(4)}}
    assert format_metrics(many) == "accuracy 0.5000"  # the four recalls stay in metrics.jsonl
