"""Checkpoints and resuming: a run stopped mid-way and resumed ends where an uninterrupted run ends."""

from __future__ import annotations

import json
import shutil
import signal
import threading

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from finetune.errors import FinetuneError
from finetune.recipe import validate_recipe
from finetune.runs.folders import STATE_FILE, complete_checkpoints, during_training, read_metrics
from finetune.runs.resume import recipe_differences
from finetune.training.callbacks import EarlyStopping
from finetune.training.checkpoints import rotate_checkpoints
from finetune.training.guards import RunInterrupted
from finetune.training.run import train

STOP_AT = 7  # SIGTERM arrives during step 7: the run saves checkpoint-8 and stops


class SigtermAt(TrainerCallback):
    """Send this process a real SIGTERM at the end of a step (what a scheduler does to a job)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)  # to this thread


class StepCounter(TrainerCallback):
    """A stateful callback of a user: its state must ride along in checkpoints."""

    def __init__(self) -> None:
        self.steps = 0
        self.optimizer_state_at_restore: int | None = None
        self.optimizer = None

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        self.steps += 1

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = state["steps"]


def resume_recipe(tiny_recipe, run_dir, regularization=None, **changes):
    recipe = json.loads(json.dumps(tiny_recipe))
    if regularization:
        recipe["regularization"] = regularization
    recipe["evaluation"] = {"batch_size": 16, "every": 3}
    recipe["early_stopping"] = {"metric": "loss", "patience": 10}
    recipe["checkpoints"] = {
        "every_steps": 3,
        "every_epoch": False,
        "keep_last": 2,
        "keep_after_training": True,
    }
    recipe["freeze"] = {"gradual": {"every": 4, "unit": "step", "start_layers": 2}}
    recipe["output"] = {"dir": str(run_dir), "plots": False}
    for key, value in changes.items():
        section, name = key.split("__")
        recipe[section][name] = value
    return recipe


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir):
    """One uninterrupted run and one stopped by SIGTERM at step 7 (12 steps, checkpoints every 3)."""
    from conftest import sentiment_rows, write_rows

    root = tmp_path_factory.mktemp("resume")
    train_file = write_rows(root / "train.csv", sentiment_rows(4))
    dev_file = write_rows(root / "dev.csv", sentiment_rows(1))
    tiny = {
        "name": "tiny",
        "model": {"name": str(tiny_model_dir)},
        "data": {"train": str(train_file), "validation": str(dev_file), "max_length": 16},
        "optimizer": {"lr": 1e-3},
        "schedule": {"warmup_ratio": 0.1},
        "training": {"epochs": 2, "batch_size": 8, "logging_steps": 1, "seed": 0},
    }
    whole = train(validate_recipe(resume_recipe(tiny, root / "whole")))
    counter = StepCounter()
    with pytest.raises(RunInterrupted) as stopped:
        train(validate_recipe(resume_recipe(tiny, root / "stopped")), callbacks=[SigtermAt(STOP_AT), counter])
    return {"tiny": tiny, "whole": whole, "stopped": root / "stopped", "error": stopped.value, "root": root}


@pytest.fixture
def stopped_copy(runs, tmp_path):
    """A fresh copy of the stopped run folder for a test to resume (and change)."""
    copy = tmp_path / "stopped"
    shutil.copytree(runs["stopped"], copy)
    return copy


def test_sigterm_saves_a_checkpoint_and_names_the_resume_command(runs):
    error, run_dir = runs["error"], runs["stopped"]
    assert error.exit_code == 128 + signal.SIGTERM
    assert f"finetune train --resume {run_dir}" in str(error)
    assert f"SIGTERM at step {STOP_AT + 1}" in str(error)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "interrupted"
    assert results["steps"] == STOP_AT + 1
    assert results["resume_command"] == f"finetune train --resume {run_dir}"
    names = [p.name for p in complete_checkpoints(run_dir / "checkpoints")]
    assert names == ["checkpoint-6", "checkpoint-8"]  # keep_last 2; checkpoint-3 rotated away
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))
    assert not (run_dir / "model").exists()  # only a finished (or diverged) run writes model/


def test_checkpoint_records_callback_states_and_best_weights(runs):
    checkpoint = runs["stopped"] / "checkpoints" / "checkpoint-8"
    state = json.loads((checkpoint / STATE_FILE).read_text())
    assert state["step"] == 8
    assert set(state["callbacks"]) >= {"EarlyStopping", "FaultGuard", "GradualUnfreezing", "StepCounter"}
    assert state["callbacks"]["StepCounter"] == {"steps": 8}
    early = state["callbacks"]["EarlyStopping"]
    # the best is the lowest evaluation loss logged so far (a tie goes to the later step); not a fixed
    # step: at steps 3 and 6 the tiny model sits at chance, ln 2, and the two losses differ by ~1e-4
    log = json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]
    losses = [(r["eval_loss"], r["step"]) for r in log if "eval_loss" in r]
    assert [step for _, step in losses] == [3, 6]
    assert (early["best"], early["best_step"]) == min(losses, key=lambda pair: (pair[0], -pair[1]))
    assert state["best_weights"] == f"best-{early['best_step']}"
    assert (runs["stopped"] / "checkpoints" / state["best_weights"] / "model.safetensors").is_file()
    # gradual unfreezing every 4 steps, 2 of 4 layers trainable from the start: layer 1 joined before
    # step 5; layer 0 joins before step 9, after this checkpoint
    assert state["callbacks"]["GradualUnfreezing"]["unfrozen"] == ["layer.1"]
    assert state["initial_metrics"]["eval_accuracy"] == runs["whole"].results["initial_metrics"]["accuracy"]
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "model.safetensors", "trainer_state.json"):
        assert (checkpoint / name).is_file(), name
    assert not (checkpoint / "training_args.bin").exists()  # no pickles that are not needed


def test_resumed_run_ends_like_the_uninterrupted_one(runs, stopped_copy):
    recipe = validate_recipe(resume_recipe(runs["tiny"], runs["root"] / "stopped"))  # output.dir may differ
    counter = StepCounter()
    resumed = train(recipe, resume=stopped_copy, callbacks=[counter])
    whole = runs["whole"]
    assert resumed.run_dir == stopped_copy
    assert resumed.results["status"] == "completed"
    assert resumed.results["steps"] == whole.results["steps"] == 12
    assert counter.steps == 12  # the user's stateful callback went on from 8
    assert resumed.results["resumes"] == [{"step": 8, "recipe_changes": []}]

    # the last step's weights, the best weights and every metric agree to float tolerance
    last_a = load_file(whole.run_dir / "checkpoints" / "checkpoint-12" / "model.safetensors")
    last_b = load_file(stopped_copy / "checkpoints" / "checkpoint-12" / "model.safetensors")
    for key in last_a:
        torch.testing.assert_close(last_b[key], last_a[key], rtol=1e-4, atol=1e-6)
    best_a = load_file(whole.run_dir / "model" / "model.safetensors")
    best_b = load_file(stopped_copy / "model" / "model.safetensors")
    for key in best_a:
        torch.testing.assert_close(best_b[key], best_a[key], rtol=1e-4, atol=1e-6)
    assert resumed.results["best"]["step"] == whole.results["best"]["step"]
    for name, value in whole.results["final_metrics"].items():
        assert resumed.results["final_metrics"][name] == pytest.approx(value, rel=1e-4, abs=1e-6), name
    assert resumed.results["initial_metrics"] == whole.results["initial_metrics"]
    assert resumed.results["unfrozen_during_training"] == whole.results["unfrozen_during_training"]

    # the training log after the checkpoint is the same, and nothing is logged twice
    def train_logs(run_dir):
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        return [(r["step"], r["loss"], r["learning_rate"]) for r in records if "loss" in r]

    logs_a, logs_b = train_logs(whole.run_dir), train_logs(stopped_copy)
    assert [s for s, _, _ in logs_b] == list(range(1, 13))
    # one end-of-training summary, the resumed run's: the stopped attempt's would cut the curves at 8
    records = [json.loads(line) for line in (stopped_copy / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "train_loss" in r] == [12]
    evaluated = [r["step"] for r in during_training(records) if "eval_loss" in r]
    assert evaluated == [r["step"] for r in during_training(read_metrics(whole.run_dir)) if "eval_loss" in r]
    assert evaluated[-1] == 12
    for (step_a, loss_a, lr_a), (step_b, loss_b, lr_b) in zip(logs_a, logs_b):
        assert step_a == step_b
        assert loss_b == pytest.approx(loss_a, rel=1e-4), step_a
        assert lr_b == pytest.approx(lr_a, rel=1e-9), step_a


def test_resume_refuses_a_recipe_that_trains_differently(runs, stopped_copy):
    recipe = validate_recipe(resume_recipe(runs["tiny"], stopped_copy, optimizer__lr=2e-3))
    with pytest.raises(FinetuneError) as refused:
        train(recipe, resume=stopped_copy)
    message = str(refused.value)
    assert "optimizer.lr: 0.001 -> 0.002" in message
    assert "--allow-recipe-change" in message
    assert not (stopped_copy / "model").exists()  # nothing ran


def test_resume_with_an_allowed_change_records_it(runs, stopped_copy):
    recipe = validate_recipe(
        resume_recipe(runs["tiny"], stopped_copy, optimizer__lr=2e-3, training__logging_steps=2)
    )
    resumed = train(recipe, resume=stopped_copy, allow_recipe_change=True)
    assert resumed.results["resumes"] == [{"step": 8, "recipe_changes": ["optimizer.lr: 0.001 -> 0.002"]}]

    # the change applies: after the checkpoint, every step runs at twice the uninterrupted run's LR
    # (the same schedule, peak 2e-3), not at the LR the checkpoint's optimizer state remembers
    def learning_rates(run_dir):
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        return {r["step"]: r["learning_rate"] for r in records if "learning_rate" in r}

    before, after = learning_rates(runs["whole"].run_dir), learning_rates(stopped_copy)
    assert set(after) >= {9, 10, 11, 12}
    for step in (10, 12):  # logging every 2 steps after the resume
        assert after[step] == pytest.approx(2 * before[step], rel=1e-9), step
    assert after[8] == pytest.approx(before[8], rel=1e-9)  # logged before the stop, at the old peak
    groups = resumed.trainer.optimizer.param_groups
    assert {g["initial_lr"] for g in groups} == {2e-3}


def test_resume_with_an_allowed_weight_decay_change_applies_it(runs, stopped_copy):
    recipe = validate_recipe(resume_recipe(runs["tiny"], stopped_copy, optimizer__weight_decay=0.3))
    resumed = train(recipe, resume=stopped_copy, allow_recipe_change=True)
    decays = {g["weight_decay"] for g in resumed.trainer.optimizer.param_groups}
    assert decays == {0.3, 0.0}  # weights decay at the new rate; biases and LayerNorms never


def test_resume_auto_continues_the_output_dir(runs, stopped_copy):
    recipe = resume_recipe(runs["tiny"], stopped_copy)
    recipe["checkpoints"]["resume"] = "auto"
    resumed = train(validate_recipe(recipe))  # the same command as the first time
    assert resumed.run_dir == stopped_copy
    assert resumed.results["status"] == "completed" and resumed.results["resumes"][0]["step"] == 8


def test_a_completed_run_has_nothing_to_resume(runs):
    recipe = validate_recipe(resume_recipe(runs["tiny"], runs["whole"].run_dir))
    completed = runs["root"] / "completed"
    shutil.copytree(runs["whole"].run_dir, completed)
    shutil.rmtree(completed / "checkpoints")  # what keep_after_training: false leaves
    with pytest.raises(FinetuneError, match="completed; there is nothing to resume"):
        train(recipe, resume=completed)


def test_resume_needs_a_run_folder(tmp_path, runs):
    recipe = validate_recipe(resume_recipe(runs["tiny"], tmp_path / "x"))
    with pytest.raises(FinetuneError, match="is not a run folder"):
        train(recipe, resume=tmp_path)


def test_recipe_differences_skip_output_and_logging_keys():
    before = {
        "optimizer": {"lr": 1e-3},
        "output": {"dir": "a"},
        "training": {"logging_steps": 1, "epochs": 2},
    }
    after = {"optimizer": {"lr": 1e-3}, "output": {"dir": "b"}, "training": {"logging_steps": 5, "epochs": 3}}
    assert recipe_differences(before, after) == ["training.epochs: 2 -> 3"]


def test_a_run_resumes_with_the_extra_metrics_opt_in_added():
    before = {"evaluation": {"extra_metrics": ["exact_match"], "trust_remote_code": False}}
    after = {"evaluation": {"extra_metrics": ["exact_match"], "trust_remote_code": True}}
    assert recipe_differences(before, after) == []


def test_rotation_keeps_the_newest_and_the_best_they_refer_to(tmp_path):
    def checkpoint(step, best):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "trainer_state.json").write_text("{}")
        (folder / STATE_FILE).write_text(json.dumps({"step": step, "best_weights": best}))

    for step, best in ((3, "best-3"), (6, "best-3"), (9, "best-9"), (12, "best-9")):
        checkpoint(step, best)
    for name in ("best-3", "best-9", ".tmp-checkpoint-15"):
        (tmp_path / name).mkdir()
    (tmp_path / "checkpoint-15").mkdir()  # no state files: an incomplete leftover, never resumed from
    assert [p.name for p in complete_checkpoints(tmp_path)] == [f"checkpoint-{s}" for s in (3, 6, 9, 12)]
    rotate_checkpoints(tmp_path, keep_last=2)
    left = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".tmp-deleting"))
    assert left == [".tmp-checkpoint-15", "best-9", "checkpoint-12", "checkpoint-15", "checkpoint-9"]


def test_early_stopping_state_round_trips():
    early = EarlyStopping(metric="accuracy", greater_is_better=True, patience=2)
    early.best, early.best_step, early.best_epoch = 0.75, 6, 1.0
    early.evaluations_without_improvement = 1
    again = EarlyStopping(metric="accuracy", greater_is_better=True, patience=2)
    again.load_state_dict(json.loads(json.dumps(early.state_dict())))
    assert again.state_dict() == early.state_dict()
    assert not again.is_improvement(0.75) and again.is_improvement(0.8)


def test_resume_from_the_command_line_uses_the_runs_recipe(runs, stopped_copy):
    from finetune.cli import main
    from finetune.runs.resume import load_train_recipe

    recipe, source, overrides = load_train_recipe("training.logging_steps=2", [], str(stopped_copy))
    assert source == str(stopped_copy / "recipe.yaml") and overrides == ["training.logging_steps=2"]
    assert recipe.training.logging_steps == 2 and recipe.optimizer.lr == 1e-3
    assert main(["train", "--resume", str(stopped_copy), "training.logging_steps=2"]) == 0
    results = json.loads((stopped_copy / "results.json").read_text())
    assert results["status"] == "completed" and results["resumes"][0]["step"] == 8


def test_train_without_recipe_or_resume_says_what_to_give(capsys):
    from finetune.cli import main

    assert main(["train"]) == 2
    assert "give a recipe (a file or a shipped name), or --resume RUN_DIR" in capsys.readouterr().err


def test_a_resumed_swa_run_continues_the_same_average(runs, tmp_path):
    """SWA's running mean is training state: stopped at step 8 (snapshots at 4, 6, 8) and resumed,
    the run averages the same snapshots and ends with the weights of the uninterrupted run."""
    swa = {"swa_start": 0.25, "swa_every": 2}
    whole = train(validate_recipe(resume_recipe(runs["tiny"], tmp_path / "whole", regularization=swa)))
    stopped_dir = tmp_path / "stopped"
    with pytest.raises(RunInterrupted):
        train(
            validate_recipe(resume_recipe(runs["tiny"], stopped_dir, regularization=swa)),
            callbacks=[SigtermAt(STOP_AT)],
        )
    checkpoint = stopped_dir / "checkpoints" / "checkpoint-8"
    assert json.loads((checkpoint / STATE_FILE).read_text())["callbacks"]["StochasticWeightAveraging"] == {
        "start_step": 3,
        "steps": [4, 6, 8],
    }
    assert (checkpoint / "swa_average.safetensors").is_file()

    resumed = train(
        validate_recipe(resume_recipe(runs["tiny"], stopped_dir, regularization=swa)), resume=stopped_dir
    )
    assert resumed.results["swa"]["steps"] == whole.results["swa"]["steps"] == [4, 6, 8, 10, 12]
    averaged_a = load_file(whole.run_dir / "model" / "model.safetensors")
    averaged_b = load_file(stopped_dir / "model" / "model.safetensors")
    for key in averaged_a:
        torch.testing.assert_close(averaged_b[key], averaged_a[key], rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def epoch_runs(runs):
    """Evaluation every epoch (6 steps) and a checkpoint every 6 steps: the cadences coincide."""
    recipe = resume_recipe(runs["tiny"], runs["root"] / "epoch-whole")
    recipe["evaluation"] = {"batch_size": 16, "every": "epoch"}
    recipe["checkpoints"]["every_steps"] = 6
    recipe["freeze"] = {}
    whole = train(validate_recipe(recipe))
    return recipe, whole


def evaluation_steps(run_dir):
    return [r["step"] for r in during_training(read_metrics(run_dir)) if "eval_loss" in r]


@pytest.mark.parametrize(
    ("signal_after", "stopped_at"),
    [(5, 6), (2, 3)],  # the signal is acted on at the next step: the epoch's last one, or mid-epoch
)
def test_a_checkpoint_at_an_epoch_end_holds_that_epochs_evaluation(
    epoch_runs, tmp_path, signal_after, stopped_at
):
    recipe, whole = epoch_runs
    recipe = {**recipe, "output": {"dir": str(tmp_path / "run"), "plots": False}}
    with pytest.raises(RunInterrupted):
        train(validate_recipe(recipe), callbacks=[SigtermAt(signal_after)])
    state = json.loads(
        (tmp_path / "run" / "checkpoints" / f"checkpoint-{stopped_at}" / STATE_FILE).read_text()
    )
    early = state["callbacks"]["EarlyStopping"]
    if stopped_at == 6:  # written after the epoch's evaluation, which it records
        assert early["best_step"] == 6 and state["best_weights"] == "best-6"
    else:  # stopped mid-epoch: no evaluation an uninterrupted run would not make
        assert early["best_step"] == 0  # the starting weights, evaluated before training
        assert evaluation_steps(tmp_path / "run") == [0]
    resumed = train(validate_recipe(recipe), resume=tmp_path / "run")
    assert evaluation_steps(tmp_path / "run") == evaluation_steps(whole.run_dir) == [0, 6, 12]
    assert resumed.results["best"] == whole.results["best"]
    best_a = load_file(whole.run_dir / "model" / "model.safetensors")
    best_b = load_file(tmp_path / "run" / "model" / "model.safetensors")
    for key in best_a:
        torch.testing.assert_close(best_b[key], best_a[key], rtol=1e-4, atol=1e-6)
