"""Gradual unfreezing (ULMFiT: Howard & Ruder, 2018, "Universal Language Model Fine-tuning").

Training starts with the head (and pooler, and `freeze.gradual.start_layers` top layers)
trainable; every `every` epochs or steps the next block down is unfrozen, until the floor set by
the rest of `freeze:`. `freezing.apply_freeze` computes the plan and freezes the waiting blocks;
`GradualUnfreezing`, a `TrainerCallback`, releases them at their step.

How the optimizer sees it. The waiting parameters are in the optimizer from the first step, in
their own parameter groups (one per block and decay/no-decay, see `optim.param_groups`), with
their scheduled learning rate. While they are frozen they get no gradient, and torch's optimizers
skip a parameter whose `.grad` is None: no update, no weight decay, no optimizer state. When
their block unfreezes they get gradients and start from a fresh Adam state, at the LR the running
schedule gives their group at that step, exactly as if the group had been added then. Building
the groups once, instead of `add_param_group` mid-run, keeps the optimizer's structure fixed for
the whole run: a checkpoint's optimizer state always matches the optimizer it is loaded into,
whatever was unfrozen when it was written, and the LR scheduler needs no per-group surgery
(`LambdaLR` keeps one `base_lr` and one lambda per group). Which blocks are unfrozen is still
training state (`state_dict`/`load_state_dict`): a resumed run must restore it before its first
step, or the restored blocks would stay frozen until the schedule's catch-up at `on_train_begin`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

from finetune.errors import FinetuneError
from finetune.layers.freezing import EvalModeGuard
from finetune.recipe.freeze import GradualSection

if TYPE_CHECKING:
    from torch import nn

UnfreezeHook = Callable[[list[str], list["nn.Parameter"]], None]


def every_steps(gradual: GradualSection, steps_per_epoch: int) -> int:
    """The unfreezing interval in optimizer steps (at least 1)."""
    if gradual.unit == "step":
        return max(1, int(gradual.every))
    return max(1, int(gradual.every * steps_per_epoch + 0.5))  # round half up


def unfreeze_schedule(gradual: GradualSection, blocks: list[str], steps_per_epoch: int) -> dict[str, int]:
    """The optimizer step before which each waiting block (listed top-down) unfreezes.

    Stage k (k = 1, 2, ...) releases `gradual.blocks` blocks before step k x interval, so with
    `every: 1, unit: epoch` the first block trains from the first step of the second epoch.
    """
    interval = every_steps(gradual, steps_per_epoch)
    return {block: (i // gradual.blocks + 1) * interval for i, block in enumerate(blocks)}


def steps_per_epoch(num_batches: int, gradient_accumulation_steps: int) -> int:
    """Optimizer steps per epoch, as the Trainer counts them (a last partial accumulation counts)."""
    return max(math.ceil(num_batches / gradient_accumulation_steps), 1)


class GradualUnfreezing(TrainerCallback):
    """Unfreeze waiting blocks top-down at their scheduled optimizer step.

    `on_unfreeze` hooks are called with the block names and their parameters after each
    unfreezing, e.g. to re-wrap a DDP model (which only synchronises parameters that required
    grad when it was wrapped) or to invalidate a cache of frozen-layer outputs.
    """

    def __init__(
        self,
        model: nn.Module,
        pending: dict[str, list[str]],
        gradual: GradualSection,
        eval_guard: EvalModeGuard | None = None,
        verbose: bool = True,
    ) -> None:
        self.model = model
        self.pending = dict(pending)  # block -> parameter names, top-down; never shrinks
        self.gradual = gradual
        self.eval_guard = eval_guard
        self.verbose = verbose
        self.unfrozen: list[str] = []
        self.history: list[dict[str, Any]] = []
        self.schedule: dict[str, int] = {}
        self.on_unfreeze: list[UnfreezeHook] = []

    def waiting_blocks(self) -> list[str]:
        return [b for b in self.pending if b not in self.unfrozen]

    def pending_parameter_names(self) -> set[str]:
        """Every parameter this callback will unfreeze or has unfrozen: they get optimizer groups from
        the start, so the optimizer's structure never changes (see the module docstring)."""
        return {name for names in self.pending.values() for name in names}

    def plan(self, steps_per_epoch: int) -> dict[str, int]:
        """Set (and return) the step at which each waiting block unfreezes."""
        self.schedule = unfreeze_schedule(self.gradual, list(self.pending), steps_per_epoch)
        return self.schedule

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        if train_dataloader is not None and hasattr(train_dataloader, "__len__"):
            per_epoch = steps_per_epoch(len(train_dataloader), args.gradient_accumulation_steps)
        else:  # an iterable without length: the Trainer runs by max_steps, one long "epoch"
            per_epoch = state.max_steps
        self.plan(per_epoch)
        self.catch_up(state.global_step)

    def on_step_begin(self, args, state, control, **kwargs):
        self.catch_up(state.global_step)

    def catch_up(self, step: int) -> None:
        """Unfreeze every waiting block whose step has come (before the forward pass of step + 1)."""
        due = [b for b in self.waiting_blocks() if self.schedule.get(b, math.inf) <= step]
        if due:
            self.unfreeze(due, step)

    def unfreeze(self, blocks: list[str], step: int | None = None) -> None:
        """Make `blocks` trainable now (and let them leave eval mode)."""
        parameters = dict(self.model.named_parameters())
        released = []
        for block in blocks:
            for name in self.pending[block]:
                parameters[name].requires_grad_(True)
                released.append(parameters[name])
            if self.eval_guard is not None:
                self.eval_guard.release(block)
            self.unfrozen.append(block)
            self.history.append({"block": block, "step": step})
        for hook in self.on_unfreeze:
            hook(blocks, released)
        if self.verbose:
            trainable = sum(p.numel() for p in parameters.values() if p.requires_grad)
            _write(f"step {step}: unfroze {', '.join(blocks)} (trainable parameters now {trainable:,})")

    def state_dict(self) -> dict[str, Any]:
        """The unfreezing state a checkpoint records (JSON-serialisable)."""
        return {"unfrozen": list(self.unfrozen), "history": list(self.history)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a checkpoint's unfreezing state: re-apply `requires_grad` for the unfrozen blocks."""
        unknown = [b for b in state["unfrozen"] if b not in self.pending]
        if unknown:
            raise FinetuneError(
                f"freeze.gradual: the checkpoint has unfrozen {', '.join(unknown)}, which this recipe never "
                f"freezes gradually (it waits on: {', '.join(self.pending)}); resume with the run's recipe"
            )
        verbose, self.verbose = self.verbose, False
        self.unfreeze([b for b in state["unfrozen"] if b not in self.unfrozen])
        self.verbose = verbose
        self.history = list(state.get("history", self.history))


def _write(line: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(line)
