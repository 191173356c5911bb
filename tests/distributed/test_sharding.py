"""Several processes train exactly like one: DDP and FSDP (sharded, on CPU processes over gloo)
against one process with the same global batch, uninterrupted and stopped mid-epoch then resumed.

Tolerances. Two processes compute the same sums in another order than one (each process's half
batch, then an all-reduce, against one process accumulating two micro-batches), so gradients agree
to float32 rounding (about 1e-7 relative), not bit for bit. Measured here (tiny BERT, fp32, no
dropout, 9 AdamW steps at lr 3e-3): every logged loss equal to 1e-7 relative or better, final
weights within 8.4e-8 of one process's while training moved them by 1.2e-2. The tests allow 1e-6
for both: ten times the rounding seen, still 10,000 times below what training moves. AdamW could
turn rounding into a larger step for an element whose gradient is near zero (it divides by the
gradient's RMS), which is why a longer run would need a looser bound. A stopped and resumed run
repeats the same operations as the uninterrupted one with the same number of processes: it is
held to the same 1e-6 (it matched exactly).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from finetune.distributed.sharding import (
    full_state_dict,
    is_sharded,
    load_weights,
    shard_model,
    sharded_units,
    sharding_note,
    snapshot,
)
from finetune.errors import RecipeError
from finetune.recipe import validate_recipe
from finetune.recipe.distributed import DistributedSection, FsdpOptions
from finetune.training.run import train

WORKER = Path(__file__).with_name("train_worker.py")
STOP_AT = 4  # SIGTERM at the end of step 4 (mid-epoch 2, 3 steps an epoch): checkpoint-5 is saved


def recipe_for(model_dir: Path, data: dict[str, str], root: Path, strategy: str) -> dict:
    return {
        "name": strategy,
        "model": {"name": str(model_dir)},
        "data": {**data, "max_length": 16},
        "optimizer": {"lr": 3e-3},
        "early_stopping": {"metric": "loss"},  # falls at every epoch: the restored weights are the last
        "calibration": {"temperature": False},  # fsdp skips it: compare the trained weights alike
        "schedule": {"name": "step", "unit": "epochs", "period": 1, "gamma": 0.5, "warmup_steps": 1},
        "regularization": {"hidden_dropout": 0.0, "attention_dropout": 0.0, "classifier_dropout": 0.0},
        "training": {
            "epochs": 3,
            "batch_size": 8,
            "global_batch_size": 16,
            "logging_steps": 1,
            "seed": 0,
            "precision": "fp32",
        },
        "evaluation": {"batch_size": 4},
        "distributed": {"strategy": strategy},
        "checkpoints": {"every_steps": 2, "every_epoch": False, "keep_after_training": True},
        "output": {"root": str(root), "plots": False},
    }


def run_processes(command: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=400)


@pytest.fixture
def one_process_group(tmp_path):
    """A process group of one (gloo), as `finetune launch` makes for each process, torn down after."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_one_fsdp_unit_per_transformer_layer_and_the_embeddings():
    from conftest import tiny_bert

    model = tiny_bert()
    names = [type(u).__name__ for u in sharded_units(model)]
    assert names.count("BertLayer") == model.config.num_hidden_layers and names.count("BertEmbeddings") == 1
    (note,) = sharding_note(DistributedSection(strategy="fsdp"), model)
    assert f"BertEmbeddings x1, BertLayer x{model.config.num_hidden_layers} and" in note
    assert sharding_note(DistributedSection(), model) == []


def test_sharded_weights_snapshot_restore_and_gather_whole(one_process_group):
    """Restore-best's snapshot and restore, and the whole weights saving gathers, on an FSDP2 model."""
    from conftest import tiny_bert

    model = tiny_bert()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    shard_model(model, FsdpOptions())
    assert is_sharded(model)
    kept = snapshot(model)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    whole = full_state_dict(model)
    assert not any(type(v) is not torch.Tensor for v in whole.values())  # plain tensors, not DTensors
    assert torch.equal(whole["classifier.bias"], before["classifier.bias"] + 1)
    load_weights(model, kept)  # sharded snapshot back
    assert largest_difference(full_state_dict(model), before) == 0
    load_weights(model, {k: v + 2 for k, v in before.items()})  # whole weights (a best-<step> file)
    assert torch.equal(full_state_dict(model)["classifier.bias"], before["classifier.bias"] + 2)


def test_adapters_are_refused_under_fsdp():
    with pytest.raises(RecipeError, match="peft: adapters with distributed.strategy fsdp are not supported"):
        validate_recipe({"distributed": {"strategy": "fsdp"}, "peft": {"method": "lora"}})


@pytest.mark.parametrize(
    ("regularization", "key"),
    [
        ({"l2_sp": 0.1}, "l2_sp"),
        ({"mixout": 0.5}, "mixout"),
        ({"swa_start": 0.5}, "swa_start"),
        ({"l2": 0.1}, "l2"),
    ],
)
def test_regularizers_that_read_whole_weights_are_refused_under_fsdp(regularization, key):
    recipe = {"distributed": {"strategy": "fsdp"}, "regularization": regularization}
    with pytest.raises(RecipeError, match=f"regularization.{key}: reads whole weights .* use strategy ddp"):
        validate_recipe(recipe)
    validate_recipe({**recipe, "distributed": {"strategy": "ddp"}})  # fine with whole replicas


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):
    """1 process; 2 DDP and 2 FSDP processes; and each of those stopped at step 4 and resumed."""
    from conftest import sentiment_rows, write_rows

    tmp = tmp_path_factory.mktemp("processes")
    data = {
        "train": str(write_rows(tmp / "train.csv", sentiment_rows(4))),  # 48 rows: 3 steps of 16
        "validation": str(write_rows(tmp / "dev.csv", sentiment_rows(1))),
    }
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    folders = {"initial": tiny_model_dir}
    for strategy in ("ddp", "fsdp"):
        recipe = recipe_for(tiny_model_dir, data, tmp / strategy, strategy)
        path = tmp / f"{strategy}.yaml"
        path.write_text(yaml.safe_dump(recipe))
        launch = [sys.executable, "-m", "finetune.cli", "launch", "--cpu", "--num-processes", "2", str(path)]
        done = run_processes(launch, env)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        (folders[strategy],) = (tmp / strategy).iterdir()

        recipe["output"]["root"] = str(tmp / f"{strategy}-stopped")
        path.write_text(yaml.safe_dump(recipe))
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(WORKER)]
        stopped = run_processes([*torchrun, str(path), "--stop-at", str(STOP_AT)], env)
        assert "exitcode  : 143" in stopped.stderr, stopped.stdout[-3000:] + stopped.stderr[-3000:]  # SIGTERM
        (folder,) = (tmp / f"{strategy}-stopped").iterdir()
        resumed = run_processes([*torchrun, "--resume", str(folder)], env)
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
        folders[f"{strategy}-resumed"] = folder

        if strategy == "ddp":  # one process: the same recipe, 8 x 2 accumulation steps
            one = recipe_for(tiny_model_dir, data, tmp / "one", "ddp")
            folders["one"] = train(validate_recipe(one)).run_dir
    return folders


def logged_losses(folder: Path) -> dict[int, float]:
    rows = map(json.loads, (folder / "metrics.jsonl").read_text().splitlines())
    return {r["step"]: r["loss"] for r in rows if "loss" in r and "eval_loss" not in r}


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model" / "model.safetensors")


def largest_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


@pytest.mark.distributed
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_log_the_losses_of_one(runs, strategy):
    one, two = logged_losses(runs["one"]), logged_losses(runs[strategy])
    assert sorted(one) == sorted(two) == list(range(1, 10))  # 3 epochs x 3 steps, each logged
    assert [two[s] for s in sorted(two)] == pytest.approx([one[s] for s in sorted(one)], rel=1e-6)


@pytest.mark.distributed
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_end_with_the_weights_of_one(runs, strategy):
    one, two = weights(runs["one"]), weights(runs[strategy])
    assert largest_difference(one, two) < 1e-6  # float32 reduction order: see the module docstring
    moved = largest_difference(one, load_file(runs["initial"] / "model.safetensors"))
    assert moved > 5e-3  # the comparison means something: training moved the weights


@pytest.mark.distributed
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_stopped_mid_epoch_and_resumed_ends_like_uninterrupted(runs, strategy):
    """`schedule.unit: epochs` builds a second loader to count steps per epoch; the resumed run must
    still draw the uninterrupted run's batches (SamplerEpoch drives the loader training uses)."""
    resumed, whole = runs[f"{strategy}-resumed"], runs[strategy]
    results = json.loads((resumed / "results.json").read_text())
    assert [r["step"] for r in results["resumes"]] == [STOP_AT + 1]
    after = {s: v for s, v in logged_losses(resumed).items() if s > STOP_AT + 1}
    assert sorted(after) == [6, 7, 8, 9]
    assert [after[s] for s in sorted(after)] == pytest.approx(
        [logged_losses(whole)[s] for s in sorted(after)], rel=1e-6
    )  # the same processes, the same batches: see the module docstring
    assert largest_difference(weights(resumed), weights(whole)) < 1e-6


@pytest.mark.distributed
def test_fsdp_checkpoints_hold_whole_loadable_weights(runs):
    """Checkpoints, best weights and model/ of a sharded run are whole models `from_pretrained` loads."""
    from transformers import AutoModelForSequenceClassification

    folder = runs["fsdp"]
    results = json.loads((folder / "results.json").read_text())
    assert results["weights_fingerprints"] is None  # shards: nothing to compare
    model = AutoModelForSequenceClassification.from_pretrained(folder / "model")
    assert largest_difference(model.state_dict(), weights(runs["ddp"])) < 1e-6
    best = sorted((folder / "checkpoints").glob("best-*"))
    assert best, "early stopping's best weights were written"
    AutoModelForSequenceClassification.from_pretrained(best[-1])


@pytest.mark.distributed
def test_fsdp_freezes_decays_and_reinitialises_like_one_process(tiny_model_dir, tmp_path):
    """FSDP2 shards each parameter on its own: frozen and trainable parameters share units, each
    group keeps its LR, re-initialised blocks start alike on every process; the loss's per-example
    terms (label smoothing, R-Drop, class weights, focal) are the same sums as in one process."""
    from conftest import sentiment_rows, write_rows

    data = {
        "train": str(write_rows(tmp_path / "train.csv", sentiment_rows(4))),
        "validation": str(write_rows(tmp_path / "dev.csv", sentiment_rows(1))),
    }
    recipe = recipe_for(tiny_model_dir, data, tmp_path / "two", "fsdp")
    recipe["freeze"] = {"embeddings": True, "bottom": 1}
    recipe["layer_lr"] = {"decay": 0.5}
    recipe["reinit"] = {"top": 1}
    recipe["regularization"].update(label_smoothing=0.1, rdrop=0.5)  # per-example terms of the forward pass
    recipe["loss"] = {"class_weights": {"pos": 2.0}, "focal_gamma": 1.0}
    recipe["training"]["epochs"] = 1
    recipe["distributed"]["fsdp"] = {"state_dict": "sharded"}  # checkpoints: shards only
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "finetune.cli", "launch", "--cpu", "--num-processes", "2", str(path)]
    done = run_processes(launch, env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "fsdp: model sharded over 2 processes" in done.stdout
    (two,) = (tmp_path / "two").iterdir()
    recipe["output"]["root"] = str(tmp_path / "one")
    one = train(validate_recipe(recipe)).run_dir

    start, end = load_file(tiny_model_dir / "model.safetensors"), weights(two)
    frozen = [k for k in start if k.startswith(("bert.embeddings.", "bert.encoder.layer.0."))]
    assert frozen and all(torch.equal(start[k], end[k]) for k in frozen)  # frozen stayed put
    top = f"bert.encoder.layer.{len({k.split('.')[3] for k in start if '.layer.' in k}) - 1}."
    assert any(not torch.equal(start[k], end[k]) for k in start if k.startswith(top))
    assert largest_difference(end, weights(one)) < 1e-6  # the same LRs per group, the same re-init
    checkpoints = list((two / "checkpoints").glob("checkpoint-*"))
    assert checkpoints and all((c / "pytorch_model_fsdp_0").is_dir() for c in checkpoints)
    assert not any((c / "model.safetensors").exists() for c in checkpoints)  # state_dict: sharded
    assert logged_losses(two) == pytest.approx(logged_losses(one), rel=1e-6)
