"""The Trainer: `transformers.Trainer` with the recipe's optimizer, schedule and loss.

`RecipeTrainer` only assembles: parameter groups and the optimizer come from `optim`, the LR
schedule from `schedules`, the loss from `regularization`; the Trainer (on Accelerate) keeps
the loop, devices, mixed precision and distribution. `training_arguments` maps recipe sections
onto `TrainingArguments` in one place, so every recipe key has exactly one effect.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainingArguments
from transformers.trainer_callback import ProgressCallback

from .errors import FinetuneError
from .optim import build_optimizer, param_groups
from .recipe import Recipe
from .regularization import loss_terms
from .schedules import build_scheduler


def resolve_precision(precision: str, use_cpu: bool) -> str:
    """`auto` -> bf16 on GPUs with bf16 support, fp16 on other GPUs, fp32 on CPU."""
    on_gpu = torch.cuda.is_available() and not use_cpu
    if precision == "auto":
        if not on_gpu:
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "fp16" and not on_gpu:
        raise FinetuneError(
            "training.precision: fp16 needs a CUDA GPU (loss scaling is GPU-only); use bf16 or fp32 on CPU"
        )
    return precision


def training_arguments(recipe: Recipe, output_dir: Path) -> TrainingArguments:
    """The `TrainingArguments` a recipe implies (optimizer and schedule are built by the trainer)."""
    training, evaluation = recipe.training, recipe.evaluation
    use_cpu = training.cpu or not torch.cuda.is_available()
    precision = resolve_precision(training.precision, use_cpu)
    by_steps = evaluation.every != "epoch"
    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=training.batch_size,
        per_device_eval_batch_size=evaluation.batch_size,
        gradient_accumulation_steps=training.gradient_accumulation_steps,
        num_train_epochs=training.epochs,
        max_steps=training.max_steps or -1,
        learning_rate=recipe.optimizer.lr,
        weight_decay=recipe.optimizer.weight_decay,
        max_grad_norm=recipe.regularization.clip_grad_norm or 0.0,
        eval_strategy="steps" if by_steps else "epoch",
        eval_steps=evaluation.every if by_steps else None,
        save_strategy="no",
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
        # non-reentrant: gradients reach trainable layers above frozen embeddings (see freezing.py)
        activation_checkpointing=training.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if training.gradient_checkpointing else None,
        report_to="none",
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=False,
    )


class RecipeTrainer(Trainer):
    """A `transformers.Trainer` whose optimizer, LR schedule and loss come from a recipe."""

    def __init__(self, recipe: Recipe, **kwargs: Any) -> None:
        self.recipe = recipe
        super().__init__(**kwargs)
        # Our loss is a per-batch mean: the Trainer divides it by the accumulation steps.
        self.loss_is_scaled_for_ga = False
        self._loss_terms: dict[str, float] = defaultdict(float)
        self._loss_term_batches = 0
        for callback in list(self.callback_handler.callbacks):
            if type(callback) is ProgressCallback:  # replaced by RecipeProgress
                self.callback_handler.remove_callback(callback)

    def planned_steps(self) -> int:
        """Optimizer steps this run will take (before any early stop), as the Trainer computes them."""
        values = self.set_initial_training_values(self.args, self.get_train_dataloader())
        return values[-1]

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            model = model if model is not None else self.model
            groups = param_groups(model, self.recipe.optimizer, self.recipe.layer_lr, self.unfrozen_later())
            self.optimizer = build_optimizer(groups, self.recipe.optimizer)
        return self.optimizer

    def unfrozen_later(self) -> set[str]:
        """Parameters gradual unfreezing releases during the run: in the optimizer from the start."""
        from .unfreezing import GradualUnfreezing

        callbacks = self.callback_handler.callbacks
        return {n for c in callbacks if isinstance(c, GradualUnfreezing) for n in c.pending_parameter_names()}

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        if self.lr_scheduler is None:
            optimizer = optimizer if optimizer is not None else self.optimizer
            self.lr_scheduler = build_scheduler(optimizer, self.recipe.schedule, num_training_steps)
            self._created_lr_scheduler = True
        return self.lr_scheduler

    def loss_terms(
        self, model: torch.nn.Module, inputs: dict[str, Any], outputs: Any
    ) -> dict[str, torch.Tensor]:
        """The named terms of the training loss; their sum is what backpropagates."""
        return loss_terms(self.recipe.regularization, self.recipe.model.task, model, inputs, outputs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        forward_inputs = {k: v for k, v in inputs.items() if k != "labels"}
        outputs = model(**forward_inputs)
        terms = self.loss_terms(model, inputs, outputs)
        loss = sum(terms.values())
        if model.training and len(terms) > 1:
            for name, value in terms.items():
                self._loss_terms[name] += float(value.detach())
            self._loss_term_batches += 1
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the mean of each loss term since the last log to training logs."""
        if "loss" in logs and self._loss_term_batches:
            for name, total in self._loss_terms.items():
                logs[f"loss_{name}"] = total / self._loss_term_batches
            self._loss_terms.clear()
            self._loss_term_batches = 0
        super().log(logs, start_time)
