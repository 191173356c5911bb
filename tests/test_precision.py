"""Precision: what `training.precision` resolves to on each device, and what reaches the Trainer."""

from __future__ import annotations

import pytest
import torch

from finetune import trainer as trainer_module
from finetune.errors import FinetuneError
from finetune.trainer import cpu_has_bf16, resolve_precision


@pytest.fixture
def gpu(monkeypatch):
    """Pretend a CUDA GPU is present; the fixture's value sets whether it supports bf16."""
    support = {"bf16": True}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: support["bf16"])
    return support


def test_auto_on_a_cpu_follows_its_bf16_instructions(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(trainer_module, "cpu_has_bf16", lambda: True)
    assert resolve_precision("auto", use_cpu=True) == "bf16"
    monkeypatch.setattr(trainer_module, "cpu_has_bf16", lambda: False)
    assert resolve_precision("auto", use_cpu=True) == "fp32"


def test_auto_on_gpus(gpu, monkeypatch):
    monkeypatch.setattr(trainer_module, "cpu_has_bf16", lambda: False)
    assert resolve_precision("auto", use_cpu=False) == "bf16"
    gpu["bf16"] = False  # e.g. a V100 or T4: fp16 with loss scaling
    assert resolve_precision("auto", use_cpu=False) == "fp16"
    assert resolve_precision("auto", use_cpu=True) == "fp32"  # training.cpu: the CPU rule applies


def test_explicit_precisions_are_kept(gpu):
    for precision in ("fp32", "bf16", "fp16"):
        assert resolve_precision(precision, use_cpu=False) == precision
    assert resolve_precision("bf16", use_cpu=True) == "bf16"


def test_fp16_on_a_cpu_is_an_error_naming_the_key(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(FinetuneError, match=r"training\.precision: fp16 needs a CUDA GPU"):
        resolve_precision("fp16", use_cpu=True)


def test_cpu_has_bf16_reads_the_cpu_capabilities(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert cpu_has_bf16() is False
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert cpu_has_bf16() is True


def arguments(tiny_recipe, tmp_path, **training):
    from finetune.recipe import validate_recipe
    from finetune.trainer import training_arguments

    tiny_recipe["training"].update(training)
    return training_arguments(validate_recipe(tiny_recipe), tmp_path / "checkpoints")


def test_recipe_keys_reach_the_training_arguments(tiny_recipe, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_module, "cpu_has_bf16", lambda: False)
    args = arguments(
        tiny_recipe, tmp_path, precision="bf16", compile=True, pin_memory=False, dataloader_workers=1
    )
    assert (args.bf16, args.fp16, args.use_cpu) == (True, False, True)
    assert args.torch_compile is True and args.dataloader_pin_memory is False
    assert args.dataloader_num_workers == 1
    args = arguments(
        tiny_recipe, tmp_path, precision="auto", compile=False, pin_memory=True, dataloader_workers=0
    )
    assert (args.bf16, args.fp16, args.torch_compile) == (False, False, False)  # auto: fp32 without bf16 CPU


def test_bf16_on_cpu_autocasts_the_forward_pass(tiny_recipe, tmp_path):
    from finetune.pipeline import prepare
    from finetune.recipe import validate_recipe

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
