"""`finetune launch`: several processes through Accelerate, and the configuration it writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

from finetune.distributed.launch import (
    LaunchOptions,
    accelerate_config,
    launch,
    launch_overrides,
    run_accelerate,
)
from finetune.distributed.processes import (
    EpochSeededSampler,
    deepspeed_config,
    replica_fingerprints,
    replicas_are_whole,
    strategy_arguments,
    weights_fingerprint,
)
from finetune.errors import FinetuneError, RecipeError
from finetune.recipe import validate_recipe
from finetune.recipe.distributed import DistributedSection
from finetune.recipe.training import TrainingSection


@pytest.mark.parametrize(
    ("global_batch", "cap", "processes", "plan"),
    [(16, 8, 1, (8, 2)), (16, 8, 2, (8, 1)), (16, 8, 4, (4, 1)), (96, 40, 1, (32, 3)), (7, 2, 1, (1, 7))],
)
def test_global_batch_is_split_into_per_device_batch_and_accumulation(global_batch, cap, processes, plan):
    training = TrainingSection(global_batch_size=global_batch, batch_size=cap)
    per_device, accumulation = training.batch_plan(processes)
    assert (per_device, accumulation) == plan
    assert per_device * accumulation * processes == global_batch and per_device <= cap


def test_global_batch_that_does_not_split_is_an_error():
    with pytest.raises(RecipeError, match="training.global_batch_size: 16 cannot be split evenly over 3"):
        TrainingSection(global_batch_size=16).batch_plan(3)
    with pytest.raises(FinetuneError, match="give `global_batch_size` or `gradient_accumulation_steps`"):
        validate_recipe({"training": {"global_batch_size": 16, "gradient_accumulation_steps": 2}})


def accelerate_picks(monkeypatch, start) -> tuple[str, object]:
    """The launcher Accelerate chooses when `start()` runs it, and the arguments it hands that launcher.

    Accelerate itself reads finetune's config file and picks; only its process starters are replaced."""
    import accelerate.commands.launch as accelerate_launch

    picked = []
    for name in ("simple_launcher", "multi_gpu_launcher", "deepspeed_launcher"):
        monkeypatch.setattr(accelerate_launch, name, lambda args, name=name: picked.append((name, args)))
    assert start() == 0
    (choice,) = picked
    return choice


def launched(monkeypatch, tmp_path, options: LaunchOptions) -> tuple[str, object]:
    recipe = validate_recipe({"output": {"dir": str(tmp_path / "run")}})
    return accelerate_picks(monkeypatch, lambda: launch(recipe, options))


def configured(monkeypatch, tmp_path, config: dict) -> tuple[str, object]:
    path = tmp_path / "accelerate.yaml"
    path.write_text(yaml.safe_dump(config))
    return accelerate_picks(monkeypatch, lambda: run_accelerate(path, []))


def test_two_cpu_processes_start_through_torchrun_with_two_workers(monkeypatch, tmp_path):
    from accelerate.utils.launch import prepare_multi_gpu_env

    name, args = launched(monkeypatch, tmp_path, LaunchOptions(num_processes=2, cpu=True))
    assert name == "multi_gpu_launcher"  # Accelerate's simple (CPU) launcher would start one process
    prepare_multi_gpu_env(args)
    assert (args.nproc_per_node, args.use_cpu) == ("2", True)


def test_one_process_runs_finetune_train_at_the_asked_precision(monkeypatch, tmp_path):
    from accelerate.utils.launch import prepare_simple_launcher_cmd_env

    name, args = launched(monkeypatch, tmp_path, LaunchOptions(mixed_precision="bf16"))
    command, env = prepare_simple_launcher_cmd_env(args)
    assert name == "simple_launcher" and env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    assert command[1:] == ["-m", "finetune.cli", "train", "training.precision=bf16"]


def test_second_machine_joins_the_main_machine_on_the_default_port(monkeypatch, tmp_path):
    from accelerate.utils.launch import prepare_multi_gpu_env

    options = LaunchOptions(
        num_processes=16, num_machines=2, machine_rank=1, main_process_ip="10.0.0.1", cpu=True
    )
    _, args = launched(monkeypatch, tmp_path, options)
    prepare_multi_gpu_env(args)
    assert (args.nproc_per_node, args.nnodes, args.node_rank) == ("8", "2", 1)
    assert args.rdzv_endpoint == "10.0.0.1:29500"


def test_fsdp_section_reaches_the_processes_through_accelerate(monkeypatch, tmp_path):
    from accelerate.utils.launch import prepare_multi_gpu_env

    section = DistributedSection(strategy="fsdp", fsdp={"sharding": "shard_grad_op", "state_dict": "sharded"})
    config = accelerate_config(section, LaunchOptions(num_processes=4), 4, "bf16")
    name, args = configured(monkeypatch, tmp_path, config)
    env = prepare_multi_gpu_env(args)
    assert name == "multi_gpu_launcher" and args.nproc_per_node == "4"
    assert (env["ACCELERATE_USE_FSDP"], env["FSDP_VERSION"]) == ("true", "2")
    # shard_grad_op keeps the gathered weights between forward and backward
    assert env["FSDP_RESHARD_AFTER_FORWARD"] == "false"
    assert env["FSDP_STATE_DICT_TYPE"] == "SHARDED_STATE_DICT"


def test_deepspeed_section_reaches_accelerate(monkeypatch, tmp_path):
    section = DistributedSection(strategy="deepspeed", deepspeed={"stage": 3})
    config = accelerate_config(section, LaunchOptions(num_processes=8), 8, "bf16", tmp_path / "ds.json")
    name, args = configured(monkeypatch, tmp_path, config)
    assert (name, args.num_processes) == ("deepspeed_launcher", 8)
    assert args.deepspeed_config_file == str(tmp_path / "ds.json")


@pytest.mark.parametrize(
    ("options", "zero3", "offload"),
    [
        ({}, False, False),
        ({"offload_optimizer": True}, False, True),
        ({"stage": 3}, True, False),
        ({"stage": 3, "offload_parameters": True}, True, True),
    ],
)
def test_deepspeed_reads_the_stage_and_offload_asked_for(options, zero3, offload):
    from accelerate.utils.deepspeed import HfDeepSpeedConfig  # how the DeepSpeed integration reads it

    section = DistributedSection(strategy="deepspeed", deepspeed=options)
    read = HfDeepSpeedConfig(deepspeed_config(section.deepspeed_options))
    assert (read.is_zero3(), read.is_offload()) == (zero3, offload)
    assert read.get_value("optimizer") is None  # the recipe's AdamW and schedule stay


def test_deepspeed_without_the_package_says_how_to_get_it(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setitem(sys.modules, "deepspeed", None)  # how Python sees a package that is not installed
    with pytest.raises(FinetuneError, match="needs the `deepspeed` package"):
        strategy_arguments(DistributedSection(strategy="deepspeed"))


def test_strategy_options_must_match_the_strategy():
    with pytest.raises(FinetuneError, match="`fsdp` options are set but strategy is `ddp`"):
        validate_recipe({"distributed": {"fsdp": {"sharding": "full_shard"}}})
    with pytest.raises(FinetuneError, match="offload_parameters needs stage: 3"):
        validate_recipe({"distributed": {"strategy": "deepspeed", "deepspeed": {"offload_parameters": True}}})
    with pytest.raises(FinetuneError, match="gradual unfreezing .* works with `ddp` only"):
        validate_recipe({"distributed": {"strategy": "fsdp"}, "freeze": {"gradual": {"every": 1}}})


def test_launcher_fixes_one_run_folder_for_every_process(tmp_path):
    recipe = validate_recipe({"name": "x", "output": {"root": str(tmp_path)}})
    overrides = launch_overrides(recipe, LaunchOptions(cpu=True, mixed_precision="no"), resuming=False)
    assert overrides[0].startswith(f"output.dir={tmp_path}/x-")
    assert overrides[1:] == ["training.cpu=true", "training.precision=fp32"]
    with pytest.raises(FinetuneError, match="with several machines set output.dir"):
        launch_overrides(recipe, LaunchOptions(num_machines=2), resuming=False)
    taken = validate_recipe({"output": {"dir": str(tmp_path)}})
    with pytest.raises(FinetuneError, match="already exists; finetune never overwrites"):
        launch_overrides(taken, LaunchOptions(), resuming=False)


def test_launch_checks_machines_and_batch_before_starting(tmp_path):
    recipe = validate_recipe({"output": {"dir": str(tmp_path / "r")}, "training": {"global_batch_size": 10}})
    with pytest.raises(FinetuneError, match="must be a multiple of --num-machines 2"):
        launch(recipe, LaunchOptions(num_processes=3, num_machines=2, main_process_ip="h"))
    with pytest.raises(FinetuneError, match="give --main-process-ip"):
        launch(recipe, LaunchOptions(num_processes=4, num_machines=2))
    with pytest.raises(RecipeError, match="cannot be split evenly over 4 processes"):
        launch(recipe, LaunchOptions(num_processes=4, cpu=True))


def launch_with(monkeypatch, tmp_path, launcher):
    """`launch` on two CPU processes with Accelerate's `launch_command` replaced by `launcher`."""
    monkeypatch.setattr("accelerate.commands.launch.launch_command", launcher)
    recipe = validate_recipe({"output": {"dir": str(tmp_path / "run")}})
    return launch(recipe, LaunchOptions(num_processes=2, cpu=True))


def test_launcher_gives_the_processes_time_to_save_a_checkpoint_after_sigterm(tmp_path, monkeypatch):
    seen = []
    monkeypatch.delenv("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", raising=False)

    def record(args):
        seen.append(os.environ.get("TORCH_ELASTIC_SHUTDOWN_TIMEOUT"))

    assert launch_with(monkeypatch, tmp_path, record) == 0
    monkeypatch.setenv("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", "45")  # the user's own value wins
    assert launch_with(monkeypatch, tmp_path, record) == 0
    assert seen == ["300", "45"]


def test_launcher_errors_surface_and_failed_runs_are_their_exit_status(tmp_path, monkeypatch, capsys):
    from torch.distributed.elastic.multiprocessing import SignalException

    def raising(error):
        def launcher(args):
            raise error

        return launcher

    with pytest.raises(FinetuneError, match="launcher failed: ValueError: port 29500 is taken"):
        launch_with(monkeypatch, tmp_path, raising(ValueError("port 29500 is taken")))
    assert launch_with(monkeypatch, tmp_path, raising(subprocess.CalledProcessError(3, "train"))) == 3
    assert "the run stopped with exit status 3" in capsys.readouterr().err
    stopped = raising(SignalException("got signal", sigval=15))
    assert launch_with(monkeypatch, tmp_path, stopped) == 143


def test_weights_are_fingerprinted_only_where_every_process_holds_them_whole(monkeypatch):
    ddp, fsdp = DistributedSection(), DistributedSection(strategy="fsdp")
    zero2 = DistributedSection(strategy="deepspeed")
    zero3 = DistributedSection(strategy="deepspeed", deepspeed={"stage": 3})
    assert [replicas_are_whole(s) for s in (ddp, zero2, zero3, fsdp)] == [True, True, False, False]
    model = torch.nn.Linear(2, 2)
    assert replica_fingerprints(model, ddp) is None  # one process: nothing to compare
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert replica_fingerprints(object(), fsdp) is None  # shards are never read
    assert replica_fingerprints(object(), zero3) is None
    assert replica_fingerprints(model, ddp) == [weights_fingerprint(model)]


def test_length_grouped_order_depends_only_on_seed_and_epoch():
    from transformers.trainer_pt_utils import LengthGroupedSampler

    lengths = list(range(5, 69))

    def order(epoch, noise):
        torch.manual_seed(noise)  # the global RNG must not matter
        sampler = EpochSeededSampler(LengthGroupedSampler(8, lengths=lengths), seed=3)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert order(0, 1) == order(0, 2)
    assert order(1, 1) == order(1, 2) != order(0, 1)
    assert sorted(order(1, 5)) == list(range(64))


@pytest.mark.distributed
def test_two_cpu_processes_train_like_one_with_the_same_global_batch(tiny_model_dir, tmp_path):
    """`finetune launch --cpu --num-processes 2`: DDP over gloo, gradual unfreezing, odd validation set."""
    from conftest import sentiment_rows, write_rows

    from finetune.training.run import train

    validation = sentiment_rows(1) + sentiment_rows(1)[:1]  # 13 rows: 2 processes pad it to 14
    recipe = {
        "name": "two",
        "model": {"name": str(tiny_model_dir)},
        "data": {
            "train": str(write_rows(tmp_path / "train.csv", sentiment_rows(4))),
            "validation": str(write_rows(tmp_path / "dev.csv", validation)),
            "max_length": 16,
        },
        "optimizer": {"lr": 1e-3},
        "schedule": {"warmup_ratio": 0.1},
        "freeze": {"gradual": {"every": 2, "unit": "step", "start_layers": 2}},
        "training": {"epochs": 2, "batch_size": 8, "global_batch_size": 16, "logging_steps": 1, "seed": 0},
        "evaluation": {"batch_size": 4},
        "checkpoints": {"every_steps": 6, "every_epoch": False, "keep_after_training": True},
        "output": {"root": str(tmp_path / "runs"), "plots": False},
    }
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(recipe))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "finetune.cli", "launch", "--cpu", "--num-processes", "2", str(path)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "batch: 16 per optimizer step = 8 per device x 2 processes x 1 accumulation step" in done.stdout
    folders = list((tmp_path / "runs").iterdir())
    assert len(folders) == 1  # every process wrote to the one run folder the launcher chose
    two = json.loads((folders[0] / "results.json").read_text())

    recipe["output"] = {"dir": str(tmp_path / "one"), "plots": False}
    one = train(validate_recipe(recipe)).results  # one process, same global batch: 8 x 2 accumulation

    # both replicas ended identical (layers unfrozen mid-run included), as DDP promises
    last = folders[0] / "checkpoints" / "checkpoint-6"
    state = json.loads((last / "finetune_state.json").read_text())
    assert state["processes"] == 2
    assert len(state["weights_fingerprints"]) == 2
    assert state["weights_fingerprints"][0] == state["weights_fingerprints"][1]
    assert two["weights_fingerprints"][0] == two["weights_fingerprints"][1]  # the restored best weights
    assert (last / "rng_state_0.pth").is_file() and (last / "rng_state_1.pth").is_file()
    # the layers unfrozen during the run trained: they moved away from the pretrained weights
    start, end = load_file(tiny_model_dir / "model.safetensors"), load_file(last / "model.safetensors")
    for name in (
        "bert.encoder.layer.0.attention.self.query.weight",
        "bert.encoder.layer.1.output.dense.weight",
    ):
        assert not torch.equal(start[name], end[name]), name
    assert [u["block"] for u in two["unfrozen_during_training"]] == [
        "layer.1",
        "layer.0",
    ]  # embeddings: step 6

    # the same optimizer steps and learning rates as one process with the same global batch
    assert two["steps"] == one["steps"] == 6  # 2 epochs x 48 / 16

    def learning_rates(folder):
        lines = (folder / "metrics.jsonl").read_text().splitlines()
        return [r["learning_rate"] for r in map(json.loads, lines) if "learning_rate" in r]

    assert learning_rates(folders[0]) == pytest.approx(learning_rates(tmp_path / "one"))
    # every validation example counted once: before training both see the same weights and the
    # same 13 examples, so the prediction metrics agree exactly (a padded duplicate would change them)
    for name in ("accuracy", "f1", "f1_macro", "mcc"):
        assert two["initial_metrics"][name] == one["initial_metrics"][name], name
    assert round(two["initial_metrics"]["accuracy"] * 13, 6).is_integer()
    # the Trainer's eval loss averages per-batch means, and the padded last batch holds the duplicate:
    # close, not exact (see docs/multi-gpu.md, "Metrics over all validation examples")
    assert two["initial_metrics"]["loss"] == pytest.approx(one["initial_metrics"]["loss"], rel=1e-2)


def test_cpu_processes_shard_with_fsdp_and_refuse_deepspeed(monkeypatch, tmp_path):
    """FSDP is no longer swapped for DDP on the CPU; DeepSpeed stops before any process starts."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    arguments = strategy_arguments(DistributedSection(strategy="fsdp"), cpu=True)
    assert arguments["fsdp"] is True and arguments["fsdp_config"]["version"] == 2
    with pytest.raises(
        FinetuneError, match="deepspeed needs CUDA GPUs; on CPU processes use strategy `fsdp`"
    ):
        strategy_arguments(DistributedSection(strategy="deepspeed"), cpu=True)
    monkeypatch.setenv("WORLD_SIZE", "1")  # one process keeps the model whole: nothing to shard
    assert "fsdp" not in strategy_arguments(DistributedSection(strategy="fsdp"), cpu=True)

    # `finetune launch --cpu`: fsdp starts N plain processes (they shard), deepspeed starts none
    fsdp = validate_recipe({"output": {"dir": str(tmp_path / "f")}, "distributed": {"strategy": "fsdp"}})
    name, _ = accelerate_picks(monkeypatch, lambda: launch(fsdp, LaunchOptions(num_processes=2, cpu=True)))
    assert name == "multi_gpu_launcher"
    deepspeed = validate_recipe(
        {"output": {"dir": str(tmp_path / "d")}, "distributed": {"strategy": "deepspeed"}}
    )
    with pytest.raises(FinetuneError, match="deepspeed needs CUDA GPUs"):
        launch(deepspeed, LaunchOptions(num_processes=2, cpu=True))
