"""`finetune train` end to end on a tiny random model: the run folder and what it holds."""

import json

import pytest
import torch

from finetune.errors import FinetuneError
from finetune.recipe import validate_recipe
from finetune.training.run import train


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


def test_the_assembler_applies_mixout_and_the_regularization_callbacks(tiny_recipe):
    from finetune.regularization.clipping import ClipGradValue
    from finetune.regularization.mixout import MixoutLinear

    tiny_recipe["regularization"] = {"mixout": 0.5, "clip_grad_value": 0.5, "clip_grad_norm": None}
    tiny_recipe["training"]["max_steps"] = 2
    tiny_recipe["evaluation"]["every"] = 1
    trainer = train(validate_recipe(tiny_recipe)).trainer
    assert any(isinstance(m, MixoutLinear) for m in trainer.model.modules())
    assert sum(isinstance(c, ClipGradValue) for c in trainer.callback_handler.callbacks) == 1
