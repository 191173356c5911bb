"""Stochastic weight averaging of the last part of a run (Izmailov et al., 2018), with torch's `swa_utils`.

From `regularization.swa_start` x the planned steps on, the weights are snapshotted at the end of
every epoch (or every `swa_every` steps) into a `torch.optim.swa_utils.AveragedModel` kept on the
CPU; when training ends, the model's weights become the running mean of the snapshots, so the final
evaluation and the saved model are the averaged ones (in place of the best checkpoint).

Batch-norm statistics would need recomputing for averaged weights (`swa_utils.update_bn`); the
encoders finetune trains use LayerNorm, which has none, so a model with BatchNorm is refused.

The average is training state: a checkpoint records the snapshot steps (`state_dict`) and the
running mean itself (`save_files`: `swa_average.safetensors`), and a resumed run continues the
same average, so it ends with the weights an uninterrupted run ends with.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel
from transformers import TrainerCallback

from finetune.errors import FinetuneError

AVERAGE_FILE = "swa_average.safetensors"


class StochasticWeightAveraging(TrainerCallback):
    """Average the weights of the snapshots taken from `start` (a share of the planned steps) on."""

    def __init__(self, start: float, every: str | int = "epoch") -> None:
        self.start = start
        self.every = every
        self.start_step = 0
        self.average: AveragedModel | None = None
        self.steps: list[int] = []  # the optimizer steps at which snapshots were taken
        self.applied = False
        self.restored: dict[str, torch.Tensor] | None = None  # a checkpoint's mean, until the model is here

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if model is not None and any(
            isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()
        ):
            raise FinetuneError(
                "regularization.swa_start: this model has BatchNorm layers, whose statistics SWA would have "
                "to recompute (torch.optim.swa_utils.update_bn); finetune supports SWA for LayerNorm models"
            )
        self.start_step = math.ceil(self.start * state.max_steps)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if isinstance(self.every, int) and state.global_step % self.every == 0:
            self.snapshot(model, state.global_step)

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        # only at a real epoch end: a run stopped part-way (a signal, early stopping) also runs this hook
        if self.every == "epoch" and float(state.epoch or 0).is_integer():
            self.snapshot(model, state.global_step)

    def snapshot(self, model: torch.nn.Module, step: int) -> None:
        """Add the current weights to the running mean (from `start_step` on, once per step)."""
        if step < self.start_step or (self.steps and self.steps[-1] == step):
            return
        if self._averaged(model) is None:
            self.average = AveragedModel(model, device="cpu")
        self.average.update_parameters(model)
        self.steps.append(step)

    def _averaged(self, model: torch.nn.Module | None) -> AveragedModel | None:
        """The running mean; after a resume, rebuilt from the checkpoint's tensors on first use."""
        if self.average is None and self.restored is not None and model is not None:
            self.average = AveragedModel(model, device="cpu")
            with torch.no_grad():
                for name, mean in self.average.module.named_parameters():
                    mean.copy_(self.restored[name])
            self.average.n_averaged.fill_(len(self.steps))
            self.restored = None
        return self.average

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if model is None or self._averaged(model) is None:
            return
        with torch.no_grad():
            for target, mean in zip(model.parameters(), self.average.module.parameters()):
                target.copy_(mean.to(device=target.device, dtype=target.dtype))
        self.applied = True

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint records (the mean itself goes to a file: `save_files`)."""
        return {"start_step": self.start_step, "steps": list(self.steps)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.start_step, self.steps = state["start_step"], list(state["steps"])

    def save_files(self, folder: Path) -> None:
        """Write the running mean into a checkpoint folder (nothing before the first snapshot)."""
        if self.average is None:
            return
        from safetensors.torch import save_file

        tensors = {n: p.detach().contiguous() for n, p in self.average.module.named_parameters()}
        save_file(tensors, str(folder / AVERAGE_FILE), metadata={"snapshots": str(len(self.steps))})

    def load_files(self, folder: Path) -> None:
        """Read a checkpoint's running mean back; it becomes the average at the next use."""
        path = folder / AVERAGE_FILE
        if not self.steps:
            return
        if not path.is_file():
            raise FinetuneError(
                f"{folder.name}: it records {len(self.steps)} SWA snapshots but not their mean "
                f"({AVERAGE_FILE}); resume from a checkpoint written with regularization.swa_start"
            )
        from safetensors.torch import load_file

        self.average, self.restored = None, load_file(str(path))

    def summary(self) -> dict[str, Any]:
        """What results.json records: how many snapshots, at which steps, and whether they were used."""
        return {
            "start_step": self.start_step,
            "snapshots": len(self.steps),
            "steps": self.steps,
            "applied": self.applied,
        }

    def describe(self) -> str:
        if not self.applied:
            return (
                f"SWA: no snapshot was taken (training ended before step {self.start_step}); "
                f"the best weights are kept"
            )
        steps = ", ".join(str(s) for s in self.steps)
        return f"SWA: the model is the mean of {len(self.steps)} snapshots (steps {steps})"
