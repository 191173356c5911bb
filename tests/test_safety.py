"""What happens on bad input: one test per row of the "What happens on bad input" table
in docs/checkpoints-and-failures.md."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import threading
from pathlib import Path

import pytest
import torch
import yaml
from transformers import TrainerCallback

from finetune.errors import FinetuneError
from finetune.model.loading import load_config, load_model
from finetune.recipe import validate_recipe
from finetune.recipe.model import ModelSection
from finetune.recipe.regularization import RegularizationSection
from finetune.runs.folders import DATA_FILES, complete_checkpoints
from finetune.training.guards import RunInterrupted
from finetune.training.run import train


def load(name: str):
    return load_model(ModelSection(name=name), 2, ["neg", "pos"], RegularizationSection())


def test_model_folder_that_does_not_exist(tmp_path):
    with pytest.raises(FinetuneError, match="model.name: folder .* does not exist"):
        load(str(tmp_path / "no-such-model"))


def test_model_folder_without_config_is_not_a_model(tmp_path):
    (tmp_path / "weights.txt").write_text("not a model")
    with pytest.raises(FinetuneError, match="without config.json; it is not a saved model"):
        load(str(tmp_path))


def test_model_that_is_no_text_encoder(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(FinetuneError, match="cannot be loaded as a sequence-classification model"):
        load(str(tmp_path))


def test_remote_code_never_runs_unless_the_recipe_allows_it(tmp_path):
    marker = tmp_path / "remote-code-ran"
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(
        json.dumps({"model_type": "sneaky", "auto_map": {"AutoConfig": "configuration_sneaky.SneakyConfig"}})
    )
    (model / "configuration_sneaky.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
        "from transformers import PretrainedConfig\n"
        "class SneakyConfig(PretrainedConfig):\n    model_type = 'sneaky'\n"
    )
    assert ModelSection(name=str(model)).trust_remote_code is False
    with pytest.raises(FinetuneError, match="trust_remote_code"):
        load_config(ModelSection(name=str(model)), 2, ["neg", "pos"])
    assert not marker.exists()


class _Payload:
    """A pickle that runs a command when loaded with a plain `torch.load`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_weights_are_loaded_as_tensors_only(tmp_path, tiny_model_dir):
    marker = tmp_path / "pickle-ran"
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / "model.safetensors").unlink()
    torch.save({"bert.embeddings.word_embeddings.weight": _Payload(marker)}, model / "pytorch_model.bin")
    with pytest.raises(Exception, match="weights_only|GLOBAL"):  # torch.load(weights_only=True) refuses it
        load(str(model))
    assert not marker.exists()


def test_existing_output_dir_is_never_overwritten(tiny_recipe, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "precious.txt").write_text("keep me")
    with pytest.raises(FinetuneError, match="already exists; finetune never overwrites a run"):
        train(validate_recipe(tiny_recipe))
    assert [p.name for p in run.iterdir()] == ["precious.txt"]


def test_full_disk_while_checkpointing_leaves_no_checkpoint_that_looks_complete(
    tiny_recipe, tmp_path, monkeypatch
):
    tiny_recipe["checkpoints"] = {"every_steps": 3, "every_epoch": False}
    real_save = torch.save

    def save(obj, path, *args, **kwargs):
        if "checkpoint-6" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(FinetuneError) as full:
        train(validate_recipe(tiny_recipe))
    message = str(full.value)
    assert "the disk is full: could not write checkpoint-6" in message
    assert "the last complete one is checkpoint-3" in message
    folder = tmp_path / "run" / "checkpoints"
    assert [p.name for p in complete_checkpoints(folder)] == ["checkpoint-3"]
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith("checkpoint-")) == ["checkpoint-3"]
    assert not list(folder.glob(".tmp-checkpoint-*"))
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the run's handlers were put back


class _StopAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)  # to this thread


def test_data_file_changed_between_runs_warns_on_resume(tiny_recipe, tmp_path, capsys):
    tiny_recipe["training"]["max_steps"] = 4
    recipe = validate_recipe(tiny_recipe)
    with pytest.raises(RunInterrupted):
        train(recipe, callbacks=[_StopAt(2)])
    run = tmp_path / "run"
    recorded = json.loads((run / DATA_FILES).read_text())
    train_file = Path(tiny_recipe["data"]["train"])
    assert recorded["train"]["path"] == str(train_file) and len(recorded["train"]["sha256"]) == 64
    with train_file.open("a", encoding="utf-8") as handle:
        handle.write("an extra line,pos\n")
    capsys.readouterr()
    train(recipe, resume=run)
    out = capsys.readouterr().out
    assert f"warning: data file changed: train: {train_file} changed since the run started" in out


def _interrupt_once(real):
    """`load_task_data` that is stopped by Ctrl-C (a real SIGINT) the first time it is called."""
    calls = []

    def load(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            signal.raise_signal(signal.SIGINT)
        return real(*args, **kwargs)

    return load


class _CrashAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise RuntimeError(f"crash before step {self.step + 1}")


def test_ctrl_c_while_loading_leaves_no_folder_and_the_same_command_runs(
    tiny_recipe, tmp_path, monkeypatch, capsys
):
    import finetune.training.run
    from finetune.cli import main

    tiny_recipe["training"]["max_steps"] = 2
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(tiny_recipe))
    monkeypatch.setattr(
        finetune.training.run, "load_task_data", _interrupt_once(finetune.training.run.load_task_data)
    )
    assert main(["train", str(recipe_file)]) == 130
    run = tmp_path / "run"
    assert (
        f"run folder {run} removed: the run stopped before its first training step" in capsys.readouterr().out
    )
    assert not run.exists()
    assert main(["train", str(recipe_file)]) == 0  # not "already exists"
    assert (run / "results.json").is_file()


def test_crash_before_the_first_step_removes_the_folder_but_not_after_it(tiny_recipe, tmp_path):
    tiny_recipe["training"]["max_steps"] = 4
    recipe = validate_recipe(tiny_recipe)
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="crash before step 1"):
        train(recipe, callbacks=[_CrashAt(0)])
    assert not run.exists()
    with pytest.raises(RuntimeError, match="crash before step 3"):
        train(recipe, callbacks=[_CrashAt(2)])  # two steps logged in metrics.jsonl: kept
    assert (run / "metrics.jsonl").is_file()
    with pytest.raises(FinetuneError, match="no complete checkpoint .* deleted \\(rm -r "):
        train(recipe, resume=run)


def test_failed_start_keeps_a_folder_holding_a_file_someone_put_there(tiny_recipe, tmp_path, monkeypatch):
    import finetune.training.run

    run = tmp_path / "run"

    def load(*args, **kwargs):
        (run / "notes.txt").write_text("mine")  # written while the run was loading
        raise KeyboardInterrupt

    monkeypatch.setattr(finetune.training.run, "load_task_data", load)
    recipe = validate_recipe(tiny_recipe)
    with pytest.raises(KeyboardInterrupt):
        train(recipe)
    assert (run / "notes.txt").read_text() == "mine" and (run / "recipe.yaml").is_file()
    with pytest.raises(
        FinetuneError,
        match=rf"already exists; .* delete it first if nothing in it is needed: rm -r {re.escape(str(run))}$",
    ):
        train(recipe)
