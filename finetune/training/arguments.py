"""The `TrainingArguments` a recipe implies, in one place, so every recipe key has exactly one effect
(the optimizer and schedule are built by `RecipeTrainer`, training/trainer.py), and the line that
tells the user the batch they imply."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainingArguments

from finetune.distributed.devices import resolve_precision
from finetune.distributed.processes import process_count, strategy_arguments
from finetune.errors import FinetuneError
from finetune.recipe import Recipe


def trackers(names: list[str]) -> list[str] | str:
    """`output.report_to` for the Trainer's integrations; a missing package is a clear error."""
    from transformers.integrations import is_mlflow_available, is_tensorboard_available, is_wandb_available

    available = {
        "tensorboard": is_tensorboard_available,
        "wandb": is_wandb_available,
        "mlflow": is_mlflow_available,
    }
    for name in names:
        if not available[name]():
            raise FinetuneError(f"output.report_to: '{name}' needs its package; pip install {name}")
    return list(names) or "none"


def point_tensorboard_at(trainer: Trainer, folder: Path) -> None:
    """Make the Trainer's TensorBoard integration write to `folder` (its default is under output_dir)."""
    from transformers.integrations import TensorBoardCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback):
            callback.logging_dir = str(folder)


def training_arguments(recipe: Recipe, output_dir: Path) -> TrainingArguments:
    """The `TrainingArguments` a recipe implies (optimizer and schedule are built by the trainer)."""
    training, evaluation = recipe.training, recipe.evaluation
    use_cpu = training.cpu or not torch.cuda.is_available()
    precision = resolve_precision(training.precision, use_cpu)
    by_steps = evaluation.every != "epoch"
    per_device, accumulation = training.batch_plan(process_count())
    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=per_device,
        per_device_eval_batch_size=evaluation.batch_size,
        gradient_accumulation_steps=accumulation,
        num_train_epochs=training.epochs,
        max_steps=training.max_steps or -1,
        learning_rate=recipe.optimizer.lr,
        weight_decay=recipe.optimizer.weight_decay,
        max_grad_norm=recipe.regularization.clip_grad_norm or 0.0,
        eval_strategy="steps" if by_steps else "epoch",
        eval_steps=evaluation.every if by_steps else None,
        save_strategy="no",  # checkpoints.CheckpointCadence decides, RecipeTrainer writes them atomically
        logging_strategy="steps",
        logging_steps=training.logging_steps,
        seed=training.seed,
        data_seed=training.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=use_cpu,
        train_sampling_strategy="group_by_length" if training.group_by_length else "random",
        length_column_name="length",
        dataloader_num_workers=training.dataloader_workers,
        dataloader_pin_memory=training.pin_memory,
        torch_compile=training.compile,
        # non-reentrant: gradients reach trainable layers above frozen embeddings (see layers/freezing.py)
        activation_checkpointing=training.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if training.gradient_checkpointing else None,
        report_to=trackers(recipe.output.report_to),
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=False,
        **strategy_arguments(recipe.distributed, cpu=use_cpu),
    )


def batch_line(trainer: Any) -> str:
    """`batch: 32 per optimizer step = 8 per device x 2 processes x 2 accumulation steps; 120 steps`."""
    args = trainer.args
    per_device, processes, accumulation = (
        args.per_device_train_batch_size,
        args.world_size,
        args.gradient_accumulation_steps,
    )
    total = per_device * processes * accumulation
    return (
        f"batch: {total} per optimizer step = {per_device} per device x {processes} "
        f"process{'es' if processes > 1 else ''} x {accumulation} accumulation step"
        f"{'s' if accumulation > 1 else ''}; {trainer.planned_steps()} optimizer steps"
    )
