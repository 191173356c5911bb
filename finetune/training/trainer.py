"""The Trainer: `transformers.Trainer` with the recipe's optimizer, schedule and loss.

`RecipeTrainer` only adapts: parameter groups and the optimizer come from `optimizer/`, the LR
schedule from `schedules/`, the loss from `regularization/`, callbacks from the assembler
(training/run.py); the Trainer (on Accelerate) keeps the loop, devices, mixed precision and
distribution; `training/arguments.py` maps recipe sections onto its `TrainingArguments`.

Public hooks where they serve (`create_optimizer`, `create_scheduler`, `compute_loss`,
`training_step`, `evaluation_loop`, `log`, callbacks). Five private methods have no public
equivalent for what they do; each was checked against transformers 5.25.0 (the upper bound in
pyproject.toml) and `tests/training/test_trainer.py` fails when one changes its signature:
- `_get_train_sampler`, `_get_eval_sampler`: length-grouped, seeded training batches and
  longest-first evaluation (the Trainer's own samplers, with our lengths and seeding).
- `_save_checkpoint`: atomic checkpoints that hold the callbacks' state (training/checkpoints.py).
- `_load_optimizer_and_scheduler`: callbacks' state restored before the optimizer's, and the
  recipe's group settings re-applied after it.
- `_maybe_log_save_evaluate`: an epoch-end checkpoint written after that epoch's evaluation.
One private attribute is set: `_created_lr_scheduler`, as the Trainer's own `create_scheduler` does.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import SequentialSampler
from transformers import Trainer
from transformers.trainer_callback import ProgressCallback
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.training_args import ParallelMode

from finetune.data import samplers, windows
from finetune.distributed.processes import (
    EpochSeededSampler,
    LateParameterSync,
    SamplerEpoch,
)
from finetune.distributed.sharding import full_state_dict
from finetune.optimizer.param_groups import build_optimizer, param_groups
from finetune.recipe import Recipe
from finetune.regularization.losses import forward_inputs, loss_terms, pretrained_anchors
from finetune.regularization.swa import StochasticWeightAveraging
from finetune.schedules.formulas import build_scheduler
from finetune.schedules.scheduler import innermost
from finetune.training.callbacks import FirstStepClock
from finetune.training.checkpoints import restore_training_state, save_checkpoint
from finetune.training.guards import FaultGuard
from finetune.training.metrics import per_document

# Parameter-group keys that come from the recipe (optimizer.*): a resume re-applies them.
RECIPE_GROUP_SETTINGS = ("initial_lr", "weight_decay", "betas", "eps", "momentum", "nesterov")


class RecipeTrainer(Trainer):
    """A `transformers.Trainer` whose optimizer, LR schedule and loss come from a recipe."""

    def __init__(
        self,
        recipe: Recipe,
        class_weights: list[float] | None = None,
        train_labels: list[int] | None = None,
        teacher: Any = None,
        **kwargs: Any,
    ) -> None:
        """`class_weights`: `loss.class_weights` in label-id order; `train_labels`: the training
        split's class ids, which `training.sampler: balanced` draws by; `teacher`: `distill:`'s
        teacher outputs (distill/teacher.py `TeacherLogits`)."""
        self.recipe = recipe
        self.teacher = teacher
        self.class_weights = None if class_weights is None else torch.tensor(class_weights)
        self.train_labels = train_labels
        super().__init__(**kwargs)
        # L2-SP's reference: the pretrained weights as they are now, before any step.
        self.anchors = pretrained_anchors(self.model) if recipe.regularization.l2_sp > 0 else None
        # Our loss is a per-batch mean: the Trainer divides it by the accumulation steps.
        self.loss_is_scaled_for_ga = False
        self._loss_terms: dict[str, float] = defaultdict(float)
        self._loss_term_batches = 0
        for callback in list(self.callback_handler.callbacks):
            if type(callback) is ProgressCallback:  # replaced by RecipeProgress
                self.callback_handler.remove_callback(callback)
        callbacks = self.callback_handler.callbacks
        self.fault_guard = next((c for c in callbacks if isinstance(c, FaultGuard)), None)
        self.late_parameters = LateParameterSync()  # layers unfrozen after DDP wrapped the model
        self.sampler_epoch = SamplerEpoch()
        self.add_callback(self.sampler_epoch)
        self.evaluation_seconds = 0.0  # spent in evaluations during `train` (see `evaluate`)
        self.all_evaluation_seconds = 0.0  # every evaluation: before, during and after training
        self.clock = FirstStepClock()  # when the first optimizer step ended (results.json time_split)
        self.add_callback(self.clock)
        self.run_state: dict[str, Any] = {}  # what checkpoints record besides the Trainer's own state
        self.deferred_save_step: int | None = None  # see _maybe_log_save_evaluate
        self.swa = next((c for c in callbacks if isinstance(c, StochasticWeightAveraging)), None)
        self._eval_lengths: list[int] | None = None
        self._eval_documents: Any = None  # window -> document of the evaluated windows (data/windows.py)
        self.prefix_cache = self._install_prefix_cache()

    def create_accelerator_and_postprocess(self) -> None:
        """The Trainer's Accelerator; on CPU processes, told that the model is sharded.

        Accelerate applies FSDP only on GPUs: with CPU processes it would wrap the (already sharded,
        distributed/sharding.py) model in DDP. Marking its state FSDP makes it keep the model as it is
        and makes the Trainer save and load FSDP's way, as it does on GPUs (transformers 5.25,
        accelerate 1.16; tests/distributed/test_sharding.py trains, saves and resumes this way)."""
        super().create_accelerator_and_postprocess()
        state = self.accelerator.state
        if self.args.fsdp and getattr(state, "fsdp_plugin", None) is None:
            from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

            state.fsdp_plugin = FullyShardedDataParallelPlugin(**self.args.fsdp_plugin_args)
            state.distributed_type = DistributedType.FSDP
            self.is_fsdp_enabled = True

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """The Trainer's `save_model`; a sharded model is gathered first and saved whole by the main
        process, one folder that `from_pretrained` loads (Accelerate's gathered state dict aliases
        buffers FSDP frees on CPU processes, and its `sharded` type writes no model folder at all)."""
        if not self.is_fsdp_enabled:
            return super().save_model(output_dir, _internal_call)
        if _internal_call and self.recipe.distributed.fsdp_options.state_dict == "sharded":
            return None  # a checkpoint: its shards (written with the optimizer state) are enough to resume
        state = full_state_dict(self.model)  # every process takes part
        if self.args.should_save:
            self._save(output_dir or self.args.output_dir, state_dict=state)

    def speed_line(self) -> str:
        """`speed: fp32, length-grouped batches, prefix cache (caching embeddings + layers 0-2)`."""
        args, training = self.args, self.recipe.training
        parts = ["bf16 autocast" if args.bf16 else "fp16 autocast" if args.fp16 else "fp32"]
        parts.append("length-grouped batches" if training.group_by_length else "random batches")
        if training.compile:
            parts.append("torch.compile")
        if self.prefix_cache is not None:
            parts.append(f"prefix cache ({self.prefix_cache.describe()})")
        return "speed: " + ", ".join(parts)

    def _install_prefix_cache(self) -> Any:
        """The frozen-prefix cache of `training.prefix_cache` (model/prefix_cache.py), on the placed model."""
        training = self.recipe.training
        if not training.prefix_cache:
            return None
        from finetune.model.prefix_cache import install_prefix_cache

        return install_prefix_cache(
            self.model, training.prefix_cache_memory_mb, verbose=self.args.process_index == 0
        )

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        self.sampler_epoch.sampler = self._pick_train_sampler(train_dataset)  # see distributed.SamplerEpoch
        return self.sampler_epoch.sampler

    def _pick_train_sampler(self, train_dataset: Any = None) -> Any:
        """Length-grouped batches from the lengths measured at tokenization (data/samplers.py); seeded by
        (seed, epoch), so every process and a resumed run draw the same batches."""
        dataset = self.train_dataset if train_dataset is None else train_dataset
        lengths = samplers.dataset_lengths(self.train_dataset)  # the columns `dataset` lost to the Trainer
        if self.recipe.training.sampler == "balanced":
            grouped = self.recipe.training.group_by_length and lengths is not None
            return samplers.BalancedSampler(
                self.train_labels,
                self.args.train_batch_size,
                self.args.data_seed,
                lengths if grouped else None,
            )
        if self.recipe.training.group_by_length and lengths is not None and len(lengths) == len(dataset):
            return samplers.LengthGroupedSampler(
                lengths, self.args.train_batch_size, seed=self.args.data_seed
            )
        sampler = super()._get_train_sampler(train_dataset)  # data without a length column
        if isinstance(sampler, LengthGroupedSampler):  # its order must not depend on the global RNG
            return EpochSeededSampler(sampler, self.args.data_seed)
        return sampler

    def _get_eval_sampler(self, eval_dataset: Any) -> Any:
        """Longest-first evaluation (least padding); `evaluation_loop` restores the data order."""
        lengths = samplers.dataset_lengths(eval_dataset) or self._eval_lengths
        sortable = self.recipe.training.group_by_length and self.args.eval_do_concat_batches
        if sortable and lengths is not None and len(lengths) == len(eval_dataset):
            return samplers.LengthSortedSampler(lengths)
        return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None

    def get_eval_dataloader(self, eval_dataset: Any = None) -> Any:
        chosen = self.eval_dataset if eval_dataset is None else eval_dataset
        chosen = self.eval_dataset[chosen] if isinstance(chosen, str) else chosen
        return self._with_lengths_of(chosen, super().get_eval_dataloader, eval_dataset)

    def get_test_dataloader(self, test_dataset: Any) -> Any:
        return self._with_lengths_of(test_dataset, super().get_test_dataloader, test_dataset)

    def _with_lengths_of(self, dataset: Any, make_loader: Any, *args: Any) -> Any:
        """Build a loader while the lengths of `dataset` are known (the Trainer drops that column)."""
        self._eval_lengths = samplers.dataset_lengths(dataset)
        self._eval_documents = windows.dataset_documents(dataset)  # for evaluation_loop, which runs next
        try:
            return make_loader(*args)
        finally:
            self._eval_lengths = None

    def evaluation_loop(self, dataloader: Any, *args: Any, **kwargs: Any) -> Any:
        sampler = samplers.find_sampler(dataloader)
        by_length = isinstance(sampler, samplers.LengthSortedSampler)
        documents, compute = self._eval_documents, self.compute_metrics
        if documents is not None and compute is not None:  # windows of long documents: metrics per document
            order = sampler.order if by_length else None
            self.compute_metrics = per_document(compute, documents, self._aggregation(), order)
        try:
            output = super().evaluation_loop(dataloader, *args, **kwargs)
        finally:
            self.compute_metrics = compute
        if by_length and output.num_samples == len(sampler):
            output = output._replace(
                predictions=samplers.restore_order(output.predictions, sampler.order),
                label_ids=samplers.restore_order(output.label_ids, sampler.order),
            )
        return output if documents is None else self._per_document(output, documents)

    def _aggregation(self) -> str:
        """How window outputs make a document's (`data.long_documents.aggregate`; data windowed by hand: mean)."""
        spec = self.recipe.data.long_documents
        return spec.aggregate if spec is not None else "mean"

    def _per_document(self, output: Any, documents: Any) -> Any:
        """`Trainer.predict`'s outputs for windows, aggregated per document as the metrics were."""
        predictions = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
        if predictions is None or len(predictions) != len(documents):
            return output
        labels = None if output.label_ids is None else windows.aggregate(output.label_ids, documents, "first")
        return output._replace(
            predictions=windows.aggregate(predictions, documents, self._aggregation()),
            label_ids=labels,
            num_samples=len(set(documents.tolist())),
        )

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        """The Trainer's evaluation, timed when it runs inside training (results.json keeps training
        throughput free of evaluation time)."""
        started = time.perf_counter()
        try:
            return super().evaluate(*args, **kwargs)
        finally:
            seconds = time.perf_counter() - started
            self.all_evaluation_seconds += seconds
            if self.is_in_train:
                self.evaluation_seconds += seconds

    def train(self, *args: Any, **kwargs: Any) -> Any:
        self.train_began_at, self.evaluation_seconds_before = time.time(), self.all_evaluation_seconds
        # An evaluation before training prepares the model for evaluation only, and Accelerate then
        # returns it as "already prepared" when training asks for DDP: the processes would train
        # unsynchronised replicas (seen with transformers 5.23 / accelerate 1.15; tests/distributed/test_launch.py).
        if self.model_wrapped is self.model and self.args.parallel_mode == ParallelMode.DISTRIBUTED:
            self.model._is_accelerate_prepared = False
        return super().train(*args, **kwargs)

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.fault_guard is not None:
            self.fault_guard.observe_loss(loss)
        if self.accelerator.sync_gradients:  # the last micro-batch: gradients are complete
            self.late_parameters.sync()
        return loss

    def _save_checkpoint(self, model, trial) -> None:
        save_checkpoint(self, self.recipe.checkpoints.keep_last)

    def _maybe_log_save_evaluate(self, *args: Any, **kwargs: Any) -> None:
        """A checkpoint asked for at a step after which the epoch-end hooks run at once (the epoch's
        last step, or a stop) is written after them, so that it holds that epoch's evaluation (and
        what follows from it: best weights, patience); a resumed run would never evaluate it again."""
        step = self.state.global_step
        if self.deferred_save_step == step:  # the epoch-end call that follows the step's own
            self.control.should_save, self.deferred_save_step = True, None
        elif self.control.should_save and (
            self.control.should_training_stop or float(self.state.epoch or 0).is_integer()
        ):
            self.control.should_save, self.deferred_save_step = False, step
        super()._maybe_log_save_evaluate(*args, **kwargs)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        if checkpoint is None:
            return super()._load_optimizer_and_scheduler(checkpoint)
        restore_training_state(self, Path(checkpoint))  # callbacks first: e.g. unfrozen blocks
        # The group settings the recipe sets (peak LRs, weight decay, betas, ...): loading the optimizer
        # state would bring back the checkpoint's, and a change resumed with --allow-recipe-change must
        # apply. Only those: other group keys may be an optimizer's running state.
        optimizer = innermost(self.optimizer)
        recipe_keys = {*RECIPE_GROUP_SETTINGS, *self.recipe.optimizer.kwargs}
        settings = [{k: v for k, v in group.items() if k in recipe_keys} for group in optimizer.param_groups]
        super()._load_optimizer_and_scheduler(checkpoint)
        for group, recipe_settings in zip(optimizer.param_groups, settings):
            group.update(recipe_settings)
        if callable(getattr(self.lr_scheduler, "refresh", None)):  # this step's LR from the recipe's peaks
            self.lr_scheduler.refresh()

    def planned_steps(self) -> int:
        """Optimizer steps this run will take (before any early stop), as the Trainer computes them."""
        return self.training_values()[-1]

    def training_values(self) -> tuple:
        """The Trainer's (epochs, steps per epoch, ..., planned steps) from a loader built only to count
        its batches. The sampler of the loader that trains stays the one `SamplerEpoch` tells each
        epoch: a second loader would otherwise leave it pointing at an orphan sampler, and a resumed
        run under several processes would draw other batches than the uninterrupted one."""
        training_sampler = self.sampler_epoch.sampler
        try:
            return self.set_initial_training_values(self.args, self.get_train_dataloader())
        finally:
            self.sampler_epoch.sampler = training_sampler or self.sampler_epoch.sampler

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            model = model if model is not None else self.model
            groups = param_groups(model, self.recipe.optimizer, self.recipe.layer_lr, self.unfrozen_later())
            self.optimizer = build_optimizer(groups, self.recipe.optimizer)
        return self.optimizer

    def unfrozen_later(self) -> set[str]:
        """Parameters gradual unfreezing releases during the run: in the optimizer from the start."""
        from finetune.layers.unfreezing import GradualUnfreezing

        callbacks = self.callback_handler.callbacks
        return {n for c in callbacks if isinstance(c, GradualUnfreezing) for n in c.pending_parameter_names()}

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        if self.lr_scheduler is None:
            optimizer = optimizer if optimizer is not None else self.optimizer
            recipe = self.recipe
            steps_per_epoch = None
            if recipe.schedule.uses_epochs:  # optimizer steps per epoch, as the Trainer counts them
                steps_per_epoch = self.training_values()[1]
            self.lr_scheduler = build_scheduler(
                optimizer,
                recipe.schedule,
                num_training_steps,
                steps_per_epoch,
                greater_is_better=recipe.early_stopping.greater_is_better(recipe.model.task),
            )
            self._created_lr_scheduler = True
        return self.lr_scheduler

    def loss_terms(
        self, model: torch.nn.Module, inputs: dict[str, Any], outputs: Any
    ) -> dict[str, torch.Tensor]:
        """The named terms of the training loss; their sum is what backpropagates."""
        spec, shaping = self.recipe.regularization, self.recipe.loss
        return loss_terms(
            spec,
            self.recipe.model.task,
            model,
            inputs,
            outputs,
            self.anchors,
            weights=self.class_weights,
            focal_gamma=shaping.focal_gamma,
            teacher_logits=self.teacher.lookup(inputs)
            if self.teacher is not None and model.training
            else None,
            distill=self.recipe.distill,
        )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**forward_inputs(self.recipe.regularization, model, inputs))  # x2 for R-Drop
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
