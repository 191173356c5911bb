"""The torch side of `schedules/formulas.py`: the scheduler that applies a schedule to every parameter group,
the `plateau` state, and the callback that feeds that state the validation metric.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau
from transformers import TrainerCallback

from finetune.errors import FinetuneError

EVAL_PREFIX = "eval_"


class PlateauScale:
    """The multiplier that the `plateau` schedule cuts by `factor` when the validation metric stalls.

    The policy (patience, relative threshold, cooldown, floor) is torch's `ReduceLROnPlateau`, run
    on a one-parameter stand-in optimizer whose LR *is* the multiplier; the multiplier then scales
    every parameter group on top of warmup, like any other schedule.
    """

    def __init__(
        self,
        factor: float,
        patience: int,
        threshold: float,
        cooldown: int,
        floor: float,
        greater_is_better: bool,
    ) -> None:
        self._holder = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        self._policy = ReduceLROnPlateau(
            self._holder,
            mode="max" if greater_is_better else "min",
            factor=factor,
            patience=patience,
            threshold=threshold,
            cooldown=cooldown,
            min_lr=floor,
            eps=0.0,
        )

    @property
    def scale(self) -> float:
        return float(self._holder.param_groups[0]["lr"])

    def observe(self, metric: float) -> None:
        self._policy.step(metric)

    def state_dict(self) -> dict[str, Any]:
        return {"policy": self._policy.state_dict(), "scale": self.scale}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._policy.load_state_dict(state["policy"])
        self._holder.param_groups[0]["lr"] = state["scale"]


def innermost(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The torch optimizer inside wrappers such as Accelerate's (whose `step` runs no hooks)."""
    while isinstance(getattr(optimizer, "optimizer", None), torch.optim.Optimizer):
        optimizer = optimizer.optimizer
    return optimizer


class FactorScheduler(LRScheduler):
    """LR of every group = its peak (`initial_lr`) x factor(step) [x the plateau multiplier].

    A group appended after the scheduler was built (gradual unfreezing) takes its current `lr` as
    its peak, and a step pre-hook on the optimizer scales it to the current factor before the
    optimizer's next step, so no group ever takes a step at an unscheduled LR. The state is the
    step count (and the plateau state): the LR itself is recomputed from them, so a resumed run
    continues the same curve.
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, factor: Callable[[int], float], plateau: PlateauScale | None
    ) -> None:
        self.factor = factor
        self.plateau = plateau
        super().__init__(optimizer)
        self._hook = innermost(optimizer).register_step_pre_hook(self._schedule_new_groups)

    def current_factor(self) -> float:
        scale = self.plateau.scale if self.plateau is not None else 1.0
        return self.factor(self.last_epoch) * scale

    def get_lr(self) -> list[float]:
        factor = self.current_factor()
        return [group.setdefault("initial_lr", group["lr"]) * factor for group in self.optimizer.param_groups]

    def _schedule_new_groups(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if any("initial_lr" not in group for group in optimizer.param_groups):
            self.refresh()

    def refresh(self) -> None:
        """Set every group's LR for the current step again (after a plateau cut or a new group)."""
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def observe(self, metric: float) -> None:
        """A validation result: `plateau` may cut the LR, effective from the next optimizer step."""
        if self.plateau is not None:
            self.plateau.observe(metric)
            self.refresh()

    def state_dict(self) -> dict[str, Any]:
        skip = ("optimizer", "factor", "plateau", "_hook")
        state = {key: value for key, value in self.__dict__.items() if key not in skip}
        if self.plateau is not None:
            state["plateau"] = self.plateau.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        plateau = state.pop("plateau", None)
        if plateau is not None and self.plateau is not None:
            self.plateau.load_state_dict(plateau)
        self.__dict__.update(state)


class ReduceOnPlateau(TrainerCallback):
    """Feed each validation result during training to the `plateau` schedule.

    Evaluations before the first step and after training (the re-check of the restored weights)
    are not fed: only results the run could still react to count.
    """

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.training = False

    def on_train_begin(self, args, state, control, **kwargs):
        self.training = True

    def on_train_end(self, args, state, control, **kwargs):
        self.training = False

    def on_evaluate(self, args, state, control, metrics=None, lr_scheduler=None, **kwargs):
        if not self.training or state.global_step == 0 or not isinstance(lr_scheduler, FactorScheduler):
            return
        key = EVAL_PREFIX + self.metric
        if key not in (metrics or {}):
            raise FinetuneError(
                f"schedule.name: plateau watches early_stopping.metric '{self.metric}', which the "
                f"evaluation did not report"
            )
        lr_scheduler.observe(float(metrics[key]))
