"""How a run ends: results.json, the saved best weights, report and plots, for every ending."""

import contextlib
import json
import signal

import pytest
import torch
from conftest import FakeMetric
from transformers import TrainerCallback

from finetune.recipe import load_recipe, validate_recipe
from finetune.training.guards import RunInterrupted, TrainingDiverged
from finetune.training.run import train


def test_run_folder_holds_recipe_metrics_results_model_and_plots(tiny_recipe, tmp_path):
    recipe = validate_recipe(tiny_recipe)
    result = train(recipe)
    run = result.run_dir
    assert run == tmp_path / "run"
    for name in ("recipe.yaml", "metrics.jsonl", "results.json", "lr.png", "loss.png", "metrics.png"):
        assert (run / name).is_file(), name
    assert (run / "model" / "model.safetensors").is_file()
    assert not (run / "model" / "training_args.bin").exists()

    # the resolved recipe reproduces the run's recipe exactly
    assert load_recipe(run / "recipe.yaml") == recipe

    results = json.loads((run / "results.json").read_text())
    assert results["labels"] == ["neg", "pos"]
    assert results["data"] == {
        "train": 48,
        "validation": 12,
        "sources": {"train": tiny_recipe["data"]["train"], "validation": tiny_recipe["data"]["validation"]},
    }
    assert results["steps"] == 12  # 2 epochs x ceil(48 / 8)
    assert results["metric"] == "accuracy"
    # the tiny random model does not learn in 12 steps: its starting weights stay best, and it says so
    assert results["best"]["step"] == 0 and results["learning_check"]["learned"] is False
    assert results["final_metrics"]["accuracy"] == results["best"]["value"]
    assert set(results["initial_metrics"]) >= {"loss", "accuracy", "f1", "f1_macro", "mcc"}
    assert results["train_samples_per_second"] > 0 and results["peak_rss_mb"] > 0

    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_logs = [r for r in records if "loss" in r]
    assert [r["step"] for r in train_logs] == list(range(1, 13))  # logging_steps: 1
    assert sum("eval_accuracy" in r for r in records) == 1 + 2 + 1  # before, each epoch, after
    # throughput counts training alone: the two evaluations inside training are taken out of its time
    evaluations = [r["eval_runtime"] for r in records if "eval_runtime" in r]  # before, 2 inside, after
    assert results["evaluation_seconds_in_training"] >= sum(evaluations[1:3]) > 0
    training_only = results["train_seconds"] - results["evaluation_seconds_in_training"]
    assert results["train_samples_per_second"] * training_only == pytest.approx(2 * 48, rel=0.005)
    # the command's time split: the parts add up, every evaluation (4 here) counted once
    split = results["time_split"]
    assert split["evaluation_seconds"] >= sum(evaluations) > 0
    assert split["training_seconds"] == pytest.approx(training_only, abs=0.01)
    parts = split["startup_seconds"] + split["training_seconds"] + split["evaluation_seconds"]
    assert parts + split["other_seconds"] == pytest.approx(split["command_seconds_so_far"], abs=0.03)
    assert 0 < split["startup_seconds"] < split["to_first_step_seconds"] < split["command_seconds_so_far"]
    assert split["other_seconds"] >= 0


def test_saved_model_is_the_best_not_the_last(tiny_recipe, fake_evaluate):
    from transformers import AutoModelForSequenceClassification, pipeline

    recorder = WeightsAtEvaluations()
    # a watched metric that peaks at the first epoch's evaluation (step 6 of 12), whatever training does
    fake_evaluate.metric = FakeMetric("score", lambda predictions, references: float(recorder.step == 6))
    tiny_recipe["evaluation"]["extra_metrics"] = ["score"]
    tiny_recipe["evaluation"]["trust_remote_code"] = True
    tiny_recipe["early_stopping"] = {"metric": "score", "mode": "max"}
    result = train(validate_recipe(tiny_recipe), callbacks=[recorder])
    assert result.results["best"]["step"] == 6 and result.results["steps"] == 12
    assert sorted(recorder.weights) == [6, 12]

    folder = result.run_dir / "model"
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    assert model.config.id2label == {0: "neg", 1: "pos"}
    classify = pipeline("text-classification", model=str(folder))
    assert classify("great film")[0]["label"] in {"neg", "pos"}
    saved = model.state_dict()
    # temperature scaling (on by default) divides the saved head's logit layer by T, nothing else
    temperature = (result.results.get("calibration") or {}).get("temperature", 1.0)
    for key, value in saved.items():
        if key.startswith("classifier."):
            torch.testing.assert_close(value, recorder.weights[6][key] / temperature)
        else:
            assert torch.equal(value, recorder.weights[6][key]), key
    assert any(not torch.equal(value, recorder.weights[12][key]) for key, value in saved.items())


def test_restored_weights_scored_by_the_last_evaluation_are_not_evaluated_again(tiny_recipe, fake_evaluate):
    recorder = WeightsAtEvaluations()
    # a watched metric that grows with the step: the last evaluation (step 12) is the best
    fake_evaluate.metric = FakeMetric("score", lambda predictions, references: float(recorder.step))
    tiny_recipe["evaluation"]["extra_metrics"] = ["score"]
    tiny_recipe["evaluation"]["trust_remote_code"] = True
    tiny_recipe["early_stopping"] = {"metric": "score", "mode": "max"}
    result = train(validate_recipe(tiny_recipe), callbacks=[recorder])
    results = result.results
    assert results["best"]["step"] == 12 and results["final_evaluation"] == "reused the evaluation at step 12"
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    scored = [r for r in records if "eval_score" in r]
    assert [r["step"] for r in scored] == [0, 6, 12]  # before, each epoch; no repeat after training
    assert (
        results["final_metrics"]["score"] == 12.0
        and results["final_metrics"]["loss"] == scored[-1]["eval_loss"]
    )
    assert "not repeated" in (result.run_dir / "report.md").read_text()


def test_a_diverged_run_writes_its_report_and_plots(tiny_recipe, tmp_path):
    tiny_recipe["guards"] = {"divergence": {"metric": "loss", "threshold": 0.01}}
    with pytest.raises(TrainingDiverged):
        train(validate_recipe(tiny_recipe))
    run = tmp_path / "run"
    report = (run / "report.md").read_text()
    for plot in ("lr.png", "loss.png", "metrics.png"):
        assert (run / plot).is_file() and f"]({plot})" in report
    assert "(best weights)" not in (run / "model" / "README.md").read_text()  # no final evaluation


class SignalAt(TrainerCallback):
    """SIGTERM to this process after an optimizer step, as a scheduler preempting the job sends it."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            signal.raise_signal(signal.SIGTERM)


ENDINGS = {
    "completed": ({}, None, "completed the planned steps"),
    "early-stopped": (
        {"early_stopping": {"patience": 1, "min_delta": 1.0}},
        None,
        "early stopping at step 6",
    ),
    "diverged": (
        {"guards": {"divergence": {"metric": "loss", "threshold": 0.01}}},
        TrainingDiverged,
        "is above guards.divergence.threshold 0.01",
    ),
    "interrupted": ({}, RunInterrupted, "stopped by SIGTERM at step 4"),
}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_every_ending_writes_the_report(tiny_recipe, tmp_path, ending):
    changes, error, reason = ENDINGS[ending]
    tiny_recipe.update(changes)
    callbacks = [SignalAt(3)] if ending == "interrupted" else []
    with pytest.raises(error) if error else contextlib.nullcontext():
        train(validate_recipe(tiny_recipe), callbacks=callbacks)
    report = (tmp_path / "run" / "report.md").read_text()
    assert reason in report
    if ending == "interrupted":
        assert f"continue with `finetune train --resume {tmp_path / 'run'}`" in report


class WeightsAtEvaluations(TrainerCallback):
    """The model's weights at each evaluation during training, and the step just taken."""

    def __init__(self):
        self.step = 0
        self.weights = {}

    def on_step_end(self, args, state, control, **kwargs):
        self.step = state.global_step

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        # the first evaluation of a step only: the final re-check sees the restored weights
        if state.global_step > 0 and state.global_step not in self.weights:
            self.weights[state.global_step] = {
                k: v.detach().cpu().clone() for k, v in model.state_dict().items()
            }
