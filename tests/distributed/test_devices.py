"""Precision: what `training.precision` resolves to on each device, and what reaches the Trainer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from finetune.distributed.devices import choose_precision, cpu_has_bf16, resolve_precision
from finetune.errors import FinetuneError


def cpu_flags() -> set[str]:
    """The CPU's instruction-set flags as the kernel reports them (independent of torch)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo on this machine")
    lines = [line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")]
    return set(lines[0].split(":", 1)[1].split()) if lines else set()


def cpu_auto_precision() -> str:
    """What `auto` should give on this CPU: bf16 where it has AVX512-BF16 or AMX."""
    return "bf16" if cpu_flags() & {"avx512_bf16", "amx_tile"} else "fp32"


@pytest.mark.parametrize(
    ("on_gpu", "gpu_bf16", "cpu_bf16", "expected"),
    [
        (True, True, False, "bf16"),
        (True, False, True, "fp16"),  # e.g. a V100 or T4: fp16 with loss scaling; the CPU does not matter
        (False, False, True, "bf16"),
        (False, True, False, "fp32"),  # training.cpu on a bf16 GPU machine: the CPU rule applies
    ],
)
def test_auto_follows_the_device_it_trains_on(on_gpu, gpu_bf16, cpu_bf16, expected):
    assert choose_precision("auto", on_gpu, gpu_bf16, cpu_bf16) == expected


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_explicit_precisions_are_kept_on_a_gpu(precision):
    assert choose_precision(precision, on_gpu=True, gpu_bf16=False, cpu_bf16=False) == precision


def test_explicit_bf16_and_fp32_are_kept_on_a_cpu():
    assert choose_precision("bf16", on_gpu=False, gpu_bf16=False, cpu_bf16=False) == "bf16"
    assert choose_precision("fp32", on_gpu=False, gpu_bf16=False, cpu_bf16=True) == "fp32"


def test_fp16_on_a_cpu_is_an_error_naming_the_key():
    with pytest.raises(FinetuneError, match=r"training\.precision: fp16 needs a CUDA GPU"):
        choose_precision("fp16", on_gpu=False, gpu_bf16=False, cpu_bf16=True)
    with pytest.raises(FinetuneError, match=r"training\.precision: fp16 needs a CUDA GPU"):
        resolve_precision("fp16", use_cpu=True)  # this machine, for real


def test_cpu_has_bf16_agrees_with_the_kernels_cpu_flags():
    assert cpu_has_bf16() is (cpu_auto_precision() == "bf16")


def test_auto_on_this_machines_cpu():
    assert resolve_precision("auto", use_cpu=True) == cpu_auto_precision()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_auto_on_this_machines_gpu():
    bf16 = torch.cuda.get_device_capability() >= (8, 0)  # Ampere and later compute in bf16
    assert resolve_precision("auto", use_cpu=False) == ("bf16" if bf16 else "fp16")


def arguments(tiny_recipe, tmp_path, **training):
    from finetune.recipe import validate_recipe
    from finetune.training.arguments import training_arguments

    tiny_recipe["training"].update(training)
    return training_arguments(validate_recipe(tiny_recipe), tmp_path / "checkpoints")


def test_recipe_keys_reach_the_training_arguments(tiny_recipe, tmp_path):
    args = arguments(
        tiny_recipe, tmp_path, precision="bf16", compile=True, pin_memory=False, dataloader_workers=1
    )
    assert (args.bf16, args.fp16, args.use_cpu) == (True, False, True)
    assert args.torch_compile is True and args.dataloader_pin_memory is False
    assert args.dataloader_num_workers == 1
    args = arguments(
        tiny_recipe, tmp_path, precision="auto", compile=False, pin_memory=True, dataloader_workers=0
    )
    assert (args.bf16, args.fp16, args.torch_compile) == (cpu_auto_precision() == "bf16", False, False)


def test_bf16_on_cpu_autocasts_the_forward_pass(tiny_recipe, tmp_path):
    from finetune.recipe import validate_recipe
    from finetune.training.run import prepare

    tiny_recipe["training"]["precision"] = "bf16"
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    trainer = prepare(validate_recipe(tiny_recipe), run_dir).trainer
    assert trainer.accelerator.mixed_precision == "bf16"
    batch = next(iter(trainer.get_train_dataloader()))
    with trainer.accelerator.autocast(), torch.no_grad():  # what Accelerate wraps the forward pass in
        hidden = trainer.model.bert.embeddings(input_ids=batch["input_ids"])
        assert trainer.model.bert.encoder.layer[0].intermediate.dense(hidden).dtype == torch.bfloat16
    assert next(trainer.model.parameters()).dtype == torch.float32  # weights stay fp32 (mixed precision)
