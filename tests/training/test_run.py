"""`finetune train` end to end on a tiny random model: the run folder and what it holds."""

import json

import pytest
import torch
from conftest import FakeMetric
from transformers import TrainerCallback

from finetune.errors import FinetuneError
from finetune.recipe import load_recipe, validate_recipe
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


def test_logged_learning_rate_follows_warmup_and_linear_decay(tiny_recipe):
    tiny_recipe["schedule"] = {"warmup_steps": 3}
    result = train(validate_recipe(tiny_recipe))
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    logged = {r["step"]: r["learning_rate"] for r in records if "learning_rate" in r}
    peak, total = 1e-3, 12
    # the LR logged at step s is the one used for optimizer step s (0-based s-1)
    for step in (1, 2, 3, 4, 8, 12):
        used = step - 1
        expected = peak * used / 3 if used < 3 else peak * (total - used) / (total - 3)
        assert logged[step] == pytest.approx(expected), step


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
    for key, value in saved.items():
        assert torch.equal(value, recorder.weights[6][key]), key
    assert any(not torch.equal(value, recorder.weights[12][key]) for key, value in saved.items())


def test_misspelt_extra_metric_to_watch_fails_before_training(tiny_recipe, tmp_path, fake_evaluate):
    tiny_recipe["evaluation"]["extra_metrics"] = ["exact_match"]
    tiny_recipe["evaluation"]["trust_remote_code"] = True
    tiny_recipe["early_stopping"] = {"metric": "exact_mach", "mode": "max"}
    with pytest.raises(FinetuneError) as error:
        train(validate_recipe(tiny_recipe))
    message = str(error.value)
    assert "early_stopping.metric: the evaluation does not report 'exact_mach'" in message
    assert "accuracy, exact_match, f1, f1_macro, loss, mcc" in message
    assert not (tmp_path / "run").exists()  # failed in preparation: no run folder left behind


def test_a_hub_metric_without_the_opt_in_fails_before_anything_is_loaded(
    tiny_recipe, tmp_path, fake_evaluate
):
    tiny_recipe["evaluation"]["extra_metrics"] = ["exact_match"]
    with pytest.raises(FinetuneError, match="set evaluation.trust_remote_code: true to allow that"):
        train(validate_recipe(tiny_recipe))
    assert fake_evaluate.calls == [] and not (tmp_path / "run").exists()


def test_frozen_layers_do_not_change(tiny_recipe):
    from transformers import AutoModelForSequenceClassification

    tiny_recipe["freeze"] = {"embeddings": True, "layers": ["0-1"]}
    tiny_recipe["evaluation"]["before_training"] = False  # else the unlearned start stays best
    result = train(validate_recipe(tiny_recipe))
    before = AutoModelForSequenceClassification.from_pretrained(tiny_recipe["model"]["name"]).state_dict()
    after = result.trainer.model.state_dict()
    for key, value in after.items():
        if key.startswith(("bert.embeddings.", "bert.encoder.layer.0.", "bert.encoder.layer.1.")):
            assert torch.equal(value.cpu(), before[key]), key
    changed = [
        k
        for k in after
        if k.startswith("bert.encoder.layer.3.") and not torch.equal(after[k].cpu(), before[k])
    ]
    assert changed
    results = json.loads((result.run_dir / "results.json").read_text())
    assert results["frozen_blocks"] == ["embeddings", "layer.0", "layer.1"]
    assert results["trainable_parameters"] < results["total_parameters"]


def test_regression_run(tiny_recipe, tmp_path):
    from conftest import write_rows

    rows = [
        {"text": t, "label": float(i % 5)} for i, t in enumerate(["a b", "c d e", "f", "g h", "i j k l"] * 6)
    ]
    path = write_rows(tmp_path / "reg.csv", rows)
    tiny_recipe["model"]["task"] = "regression"
    tiny_recipe["data"] = {"train": str(path), "validation_fraction": 0.2, "max_length": 16}
    tiny_recipe["training"]["epochs"] = 1
    result = train(validate_recipe(tiny_recipe))
    assert result.results["metric"] == "pearson"
    assert set(result.results["final_metrics"]) >= {"pearson", "spearman", "mse", "loss"}
    assert result.results["data"]["validation"] == 6


def test_layer_out_of_range_fails_before_training_and_leaves_no_run_folder(tiny_recipe, tmp_path):
    tiny_recipe["freeze"] = {"layers": [7]}
    with pytest.raises(FinetuneError, match="the model has 4 encoder layers"):
        train(validate_recipe(tiny_recipe))
    assert not (tmp_path / "run").exists()


def test_step_evaluation_only_at_the_end_is_an_error(tiny_recipe, tmp_path):
    tiny_recipe["evaluation"]["every"] = 500  # the run has 12 steps
    with pytest.raises(FinetuneError) as error:
        train(validate_recipe(tiny_recipe))
    message = str(error.value)
    assert "evaluation.every: 500 steps, but this run has only 12" in message
    # transformers evaluates after the last step anyway: the message must not say "never"
    assert "evaluate only once, after the last step" in message and "never evaluate" not in message
    assert "at most 6" in message
    assert not (tmp_path / "run").exists()


def test_max_length_past_the_models_positions_fails_before_training(tiny_recipe, tmp_path):
    tiny_recipe["data"]["max_length"] = 1024  # the tiny model has 128 positions
    with pytest.raises(FinetuneError, match=r"data.max_length: 1024 tokens, but .* takes at most 128"):
        train(validate_recipe(tiny_recipe))
    assert not (tmp_path / "run").exists()
