"""Surviving faults: a stop signal, a loss that becomes NaN or infinite, a metric that diverges.

`FaultGuard` is one callback that watches all three and stops the run cleanly, so the pipeline
can save what there is and tell the user what happened and how to go on:

- SIGINT (Ctrl-C) or SIGTERM (a preempted or cancelled job): finish the current optimizer step,
  save a checkpoint, stop. A second signal (a few seconds later) aborts at once.
- A training loss that is NaN or infinite (`guards.nonfinite_loss`): `stop` before the bad
  update is applied (the weights stay finite and the best ones are kept), or `skip` that update.
- A validation metric worse than `guards.divergence.threshold`: stop (Lightning's
  `divergence_threshold`).

Under several processes every decision is agreed on (one tiny all-reduce per optimizer step), so
all processes stop at the same step even when only one of them got the signal or the bad batch.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from typing import Any

from transformers import TrainerCallback

from finetune.distributed.processes import any_process, is_main_process, process_count
from finetune.errors import FinetuneError
from finetune.recipe.early_stopping import LOWER_IS_BETTER
from finetune.recipe.guards import GuardsSection
from finetune.training.callbacks import EVAL_PREFIX

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# torchrun forwards the signal a terminal or SLURM already sent to every process: a repeat this soon
# is the same request, not a user insisting.
REPEAT_GRACE_SECONDS = 3.0


class RunInterrupted(FinetuneError):
    """The run was stopped by a signal after saving a checkpoint; `exit_code` is 128 + the signal."""

    same_on_every_process = True  # every process stopped at the same step: the CLI says it once

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


class TrainingDiverged(FinetuneError):
    """Training stopped because the loss or a validation metric went bad."""

    same_on_every_process = True
    exit_code = 3


def resume_command(run_dir: Any, cpu: bool) -> str:
    """The command that continues a stopped run, as it was started (one or several processes)."""
    processes = process_count()
    if processes == 1:
        return f"finetune train --resume {run_dir}"
    if int(os.environ.get("LOCAL_WORLD_SIZE", processes)) != processes:  # several machines
        return f"your `finetune launch` command on every machine, with --resume {run_dir}"
    return f"finetune launch --num-processes {processes}{' --cpu' if cpu else ''} --resume {run_dir}"


class FaultGuard(TrainerCallback):
    """Stop on a signal, a non-finite loss or a diverging metric; remember why (see the module docstring).

    The trainer reports every micro-batch's loss to `observe_loss`; the check runs once per
    optimizer step, just before the optimizer applies the update.
    """

    def __init__(self, guards: GuardsSection, task: str) -> None:
        self.guards = guards
        self.task = task
        self.signal_received: int | None = None
        self._signal_time = 0.0
        self.stop_reason: str | None = None
        self.stopped_by: str | None = None  # "signal" | "nonfinite" | "divergence"
        self.skipped_steps: list[int] = []
        self._nonfinite: Any = None  # a bool tensor on the loss's device: no sync per micro-batch
        self._previous_handlers: dict[int, Any] = {}

    # -- signals -----------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        """Catch SIGINT/SIGTERM (main thread only; elsewhere Python does not allow it).

        A signal the process was told to ignore stays ignored: a shell without job control starts
        background jobs (`finetune train ... &` in a script) with SIGINT ignored, so that the
        terminal's Ctrl-C stops the script, not its jobs.
        """
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in STOP_SIGNALS:
            if signal.getsignal(signum) is signal.SIG_IGN:
                continue
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def restore_signal_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()

    def _on_signal(self, signum: int, frame: Any) -> None:
        now = time.monotonic()
        if self.signal_received is not None:
            if now - self._signal_time < REPEAT_GRACE_SECONDS:
                return
            self.restore_signal_handlers()  # the user insists: stop waiting
            signal.raise_signal(signum)
            return
        self.signal_received, self._signal_time = signum, now
        if not is_main_process():
            return
        # Straight to file descriptor 2, not print(): the signal may have interrupted a write to
        # sys.stdout (a log line, the progress bar), and writing to the same buffered stream from
        # its handler raises "reentrant call inside BufferedWriter".
        message = (
            f"\nfinetune: {signal.Signals(signum).name} received: finishing this step, saving a checkpoint "
            f"and stopping (send it again to abort at once)\n"
        )
        with contextlib.suppress(OSError):  # no stderr to tell: stopping matters more
            os.write(2, message.encode())

    def on_train_begin(self, args, state, control, **kwargs):
        self.install_signal_handlers()

    def on_train_end(self, args, state, control, **kwargs):
        self.restore_signal_handlers()

    # -- non-finite losses -------------------------------------------------------------------

    def observe_loss(self, loss: Any) -> None:
        """Remember (on the device, without waiting for it) whether a micro-batch's loss was finite."""
        import torch

        bad = ~torch.isfinite(loss.detach())
        self._nonfinite = bad if self._nonfinite is None else self._nonfinite | bad

    def _take_nonfinite(self) -> bool:
        bad = self._nonfinite is not None and bool(self._nonfinite)
        self._nonfinite = None
        return bad

    def on_pre_optimizer_step(self, args, state, control, model=None, optimizer=None, **kwargs):
        nonfinite, signalled = any_process([self._take_nonfinite(), self.signal_received is not None])
        step = state.global_step + 1  # the step being taken
        if nonfinite:
            self._drop_update(model, optimizer)
            if (
                self.guards.nonfinite_loss == "skip"
                and len(self.skipped_steps) < self.guards.max_skipped_steps
            ):
                self.skipped_steps.append(step)
                print(f"finetune: non-finite training loss at step {step}: update skipped", flush=True)
            else:
                self._stop(control, "nonfinite", self._nonfinite_message(step))
        if signalled and self.stopped_by is None:
            name = (
                signal.Signals(self.signal_received).name
                if self.signal_received
                else "a signal to another process"
            )
            self.signal_received = self.signal_received or signal.SIGTERM  # another process got it
            self._stop(control, "signal", f"stopped by {name} at step {step}")
            control.should_save = True

    def _nonfinite_message(self, step: int) -> str:
        if self.skipped_steps:
            return (
                f"training loss was NaN or infinite at step {step}, after {len(self.skipped_steps)} skipped steps "
                f"(guards.max_skipped_steps: {self.guards.max_skipped_steps})"
            )
        return f"training loss became NaN or infinite at step {step}"

    @staticmethod
    def _drop_update(model: Any, optimizer: Any) -> None:
        """Keep a non-finite gradient out of the weights: no gradient, no update (AdamW skips None).

        With fp16 loss scaling the scaler already skips steps with inf/NaN gradients (and needs them).
        """
        if getattr(optimizer, "scaler", None) is not None or model is None:
            return
        model.zero_grad(set_to_none=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self.stopped_by == "signal":
            control.should_save = True  # DefaultFlowCallback never clears it; restate it after the step
        if self.stopped_by is not None:
            control.should_training_stop = True

    def on_epoch_end(self, args, state, control, **kwargs):
        # Stopped by a signal part-way through an epoch: the Trainer still runs its epoch-end hooks,
        # but an evaluation there would be one an uninterrupted run never makes (and slow the exit).
        if self.stopped_by == "signal" and not float(state.epoch or 0).is_integer():
            control.should_evaluate = False

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint records: the steps skipped so far (they count towards the limit)."""
        return {"skipped_steps": list(self.skipped_steps)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.skipped_steps = list(state["skipped_steps"])

    # -- diverging metrics -------------------------------------------------------------------

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        limit = self.guards.divergence
        if limit is None or state.global_step == 0 or not metrics or self.stopped_by is not None:
            return
        value = metrics.get(EVAL_PREFIX + limit.metric)
        if value is None:
            return
        lower_is_better = limit.metric in LOWER_IS_BETTER
        worse = value > limit.threshold if lower_is_better else value < limit.threshold
        if worse or not math.isfinite(value):
            side = "above" if lower_is_better else "below"
            self._stop(
                control,
                "divergence",
                f"validation {limit.metric} {value:.4g} at step {state.global_step} is {side} "
                f"guards.divergence.threshold {limit.threshold:g}",
            )

    def _stop(self, control: Any, by: str, reason: str) -> None:
        if self.stopped_by is None:
            self.stopped_by, self.stop_reason = by, reason
        control.should_training_stop = True
