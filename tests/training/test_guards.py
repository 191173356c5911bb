"""Surviving faults: stop signals, non-finite losses and diverging metrics stop a run cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch
import yaml
from safetensors.torch import load_file

from finetune.errors import FinetuneError
from finetune.recipe import validate_recipe
from finetune.recipe.guards import GuardsSection
from finetune.training.guards import FaultGuard, RunInterrupted, TrainingDiverged
from finetune.training.run import train
from finetune.training.trainer import RecipeTrainer


@pytest.fixture
def nan_loss_at(monkeypatch):
    """Make the training loss NaN during the given optimizer steps (1-based)."""

    def install(*steps: int) -> None:
        original = RecipeTrainer.compute_loss

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            result = original(self, model, inputs, return_outputs, num_items_in_batch)
            if model.training and self.state.global_step + 1 in steps:
                loss = result[0] if return_outputs else result
                loss = loss * float("nan")
                return (loss, result[1]) if return_outputs else loss
            return result

        monkeypatch.setattr(RecipeTrainer, "compute_loss", compute_loss)

    return install


def weights_are_finite(folder) -> bool:
    return all(torch.isfinite(t).all() for t in load_file(folder / "model.safetensors").values())


def test_nan_loss_stops_before_the_update_and_keeps_the_best_weights(tiny_recipe, nan_loss_at, tmp_path):
    nan_loss_at(8)  # epoch 2, after the evaluation at step 6
    tiny_recipe["evaluation"]["before_training"] = False  # else the unlearned start stays best
    with pytest.raises(TrainingDiverged) as stopped:
        train(validate_recipe(tiny_recipe))
    assert "training loss became NaN or infinite at step 8" in str(stopped.value)
    assert stopped.value.exit_code == 3
    run = tmp_path / "run"
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "diverged"
    assert results["steps"] == 8  # stopped at the bad step
    # The stop ends the epoch, whose evaluation scores the last good weights (step 8, the NaN update
    # dropped); they tie step 6 on accuracy (0.5) and a later tie wins, so they are the best.
    evaluated = [
        json.loads(line)["step"]
        for line in (run / "metrics.jsonl").read_text().splitlines()
        if "eval_accuracy" in line
    ]
    assert evaluated == [6, 8]
    assert results["best"]["step"] == 8
    assert weights_are_finite(run / "model")  # the bad update was never applied; the best is kept


def test_nan_loss_skip_drops_only_that_update(tiny_recipe, nan_loss_at):
    nan_loss_at(5)
    tiny_recipe["guards"] = {"nonfinite_loss": "skip"}
    result = train(validate_recipe(tiny_recipe))
    assert result.results["status"] == "completed"
    assert result.results["steps"] == 12
    assert result.results["skipped_steps"] == [5]
    assert weights_are_finite(result.run_dir / "model")
    assert not (result.run_dir / "checkpoints").exists()  # a completed run drops its checkpoints


def test_too_many_skipped_steps_stop_the_run(tiny_recipe, nan_loss_at):
    nan_loss_at(*range(3, 13))
    tiny_recipe["guards"] = {"nonfinite_loss": "skip", "max_skipped_steps": 2}
    with pytest.raises(
        TrainingDiverged, match=r"at step 5, after 2 skipped steps \(guards.max_skipped_steps: 2\)"
    ):
        train(validate_recipe(tiny_recipe))


def test_diverging_validation_metric_stops_the_run(tiny_recipe, tmp_path):
    tiny_recipe["guards"] = {"divergence": {"metric": "loss", "threshold": 0.01}}
    with pytest.raises(TrainingDiverged) as stopped:
        train(validate_recipe(tiny_recipe))
    assert "above guards.divergence.threshold 0.01" in str(stopped.value)
    assert "at step 6" in str(stopped.value)  # the first evaluation during training (not the one before)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "diverged" and results["steps"] == 6


def test_a_diverging_lr_ends_with_the_weights_it_started_from(tiny_recipe, tiny_model_dir):
    from transformers import AutoModelForSequenceClassification

    tiny_recipe["optimizer"]["lr"] = 1.0  # the largest the schema takes: the loss climbs to ~10
    result = train(validate_recipe(tiny_recipe))
    assert result.results["best"]["step"] == 0
    assert result.results["final_metrics"] == result.results["initial_metrics"]
    start = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir).state_dict()
    saved = load_file(result.run_dir / "model" / "model.safetensors")
    assert all(torch.equal(saved[key], value) for key, value in start.items())


def test_divergence_metric_must_be_a_task_metric(tiny_recipe):
    tiny_recipe["guards"] = {"divergence": {"metric": "pearson", "threshold": 0.5}}
    with pytest.raises(
        FinetuneError, match="guards.divergence.metric: 'pearson' is not a classification metric"
    ):
        validate_recipe(tiny_recipe)


@pytest.fixture
def default_sigint():
    """Python's own SIGINT handler, whatever the test process inherited (a background job started
    by a shell without job control begins with SIGINT ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_repeated_signal_within_the_grace_period_is_the_same_request(monkeypatch, default_sigint):
    guard = FaultGuard(GuardsSection(), "classification")
    guard.install_signal_handlers()
    try:
        # Sent to the main thread itself: a process-directed kill() may land on one of torch's
        # threads, and the Python handler then runs only at some later point of the main thread.
        main = threading.main_thread().ident
        signal.pthread_kill(main, signal.SIGINT)  # no KeyboardInterrupt: the run is asked to stop
        signal.pthread_kill(main, signal.SIGINT)  # e.g. torchrun forwarding the terminal's Ctrl-C
        assert guard.signal_received == signal.SIGINT
        later = time.monotonic() + 10
        monkeypatch.setattr(time, "monotonic", lambda: later)
        with pytest.raises(KeyboardInterrupt):  # the user insists: abort now
            signal.pthread_kill(main, signal.SIGINT)
            for _ in range(100):  # the re-raised signal's handler runs at the next bytecode check
                time.sleep(0.001)
    finally:
        guard.restore_signal_handlers()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_ignored_signal_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    previous_term = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    guard = FaultGuard(GuardsSection(), "classification")
    try:
        guard.install_signal_handlers()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) == guard._on_signal  # the other one is caught
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        time.sleep(0.01)
        assert guard.signal_received is None
    finally:
        guard.restore_signal_handlers()
        signal.signal(signal.SIGINT, previous)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the guard put its own back
        signal.signal(signal.SIGTERM, previous_term)


def test_the_signal_handler_writes_to_stderr_unbuffered_not_to_stdout(capfd, monkeypatch):
    # print() from the handler can hit sys.stdout in the middle of a write: "reentrant call"
    monkeypatch.setattr("builtins.print", lambda *args, **kwargs: pytest.fail("the handler printed"))
    FaultGuard(GuardsSection(), "classification")._on_signal(signal.SIGTERM, None)
    out, err = capfd.readouterr()
    assert out == ""
    assert "finetune: SIGTERM received: finishing this step, saving a checkpoint" in err


def test_sigterm_to_a_running_train_command_saves_and_exits_143(tiny_recipe, tmp_path):
    tiny_recipe["training"] = {"max_steps": 100000, "batch_size": 8, "logging_steps": 1, "seed": 0}
    tiny_recipe["evaluation"] = {"batch_size": 16, "every": 100000, "before_training": False}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "finetune.cli", "train", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while not (metrics.is_file() and metrics.read_text().count("\n") >= 2):  # training has started
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=240)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert f"Continue with: finetune train --resume {tmp_path / 'run'}" in stderr
    assert "finetune: SIGTERM received: finishing this step" in stderr
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "interrupted"
    checkpoint = tmp_path / "run" / "checkpoints" / f"checkpoint-{results['steps']}"
    assert (checkpoint / "finetune_state.json").is_file()


def test_a_stop_signal_is_agreed_on_by_every_process(monkeypatch):
    """A process that did not get the signal stops at the same step as one that did."""
    from finetune.training import guards as faults

    monkeypatch.setattr(faults, "any_process", lambda flags: [flags[0], True])  # another process got it
    guard = FaultGuard(GuardsSection(), "classification")

    class State:
        global_step = 4

    class Control:
        should_training_stop = False
        should_save = False

    control = Control()
    guard.on_pre_optimizer_step(None, State(), control)
    assert guard.stopped_by == "signal" and control.should_save and control.should_training_stop
    assert guard.stop_reason == "stopped by a signal to another process at step 5"
    assert guard.signal_received == signal.SIGTERM  # exit status 143, as the other process


def test_run_interrupted_exit_code_follows_the_signal():
    assert RunInterrupted("x", signal.SIGINT).exit_code == 130
