"""Checkpoints: when they are written, how (atomically), which are kept, and resuming from them.

A checkpoint is the Trainer's own (`checkpoint-<step>/`: weights in safetensors, optimizer,
scheduler, gradient scaler, RNG states of every process, `trainer_state.json`) plus
`finetune_state.json`: the state of every callback that has one (early stopping, gradual
unfreezing, the fault guard), the evaluation before training, and which best weights go with it.

- **Atomic.** Every process writes into `.tmp-checkpoint-<step>/`; once all are done the main
  process flushes it to disk (fsync) and renames it. A crash or a full disk mid-write leaves a
  `.tmp-` folder that nothing reads, never a checkpoint that looks complete. Old checkpoints are renamed away before they are deleted.
- **Kept.** The newest `checkpoints.keep_last`, plus `best-<step>/`: the early-stopping best
  weights that a kept checkpoint refers to (a loadable Hugging Face model folder).
- **Resume.** The Trainer's `resume_from_checkpoint` restores weights, optimizer, scheduler, RNG
  and the position in the data; `restore_training_state` adds the callbacks' state and the best
  weights before the optimizer state is loaded. A run resumes only with the recipe it was started
  with (output, logging and checkpoint keys aside), unless the user allows the change.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from finetune.distributed.processes import (
    is_main_process,
    process_count,
    replica_fingerprints,
    share_from_main,
)
from finetune.distributed.sharding import gathered
from finetune.errors import FinetuneError
from finetune.recipe import Recipe
from finetune.recipe.checkpoints import CheckpointsSection
from finetune.runs.folders import (
    STATE_FILE,
    TMP_PREFIX,
    TRAINER_STATE_FILE,
    checkpoints_dir,
    complete_checkpoints,
    create_run_dir,
    fsync_path,
    fsync_tree,
    read_state,
    remove_stale_partials,
    truncate_metrics,
    write_recipe,
)
from finetune.runs.resume import ResumePoint, auto_resume_dir, check_same_recipe, find_resume_point
from finetune.training.callbacks import EarlyStopping

BEST_WEIGHTS_FILE = "model.safetensors"


class CheckpointCadence(TrainerCallback):
    """Ask the Trainer for a checkpoint every `every_steps` optimizer steps and/or at each epoch end."""

    def __init__(self, spec: CheckpointsSection) -> None:
        self.spec = spec

    def on_step_end(self, args, state, control, **kwargs):
        every = self.spec.every_steps
        if every is not None and state.global_step % every == 0:
            control.should_save = True

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.spec.every_epoch:
            control.should_save = True

    def on_save(self, args, state, control, **kwargs):
        control.should_save = False  # served: the epoch-end check must not save this step again


# -- finding checkpoints ---------------------------------------------------------------------


# -- the recipe of a resumed run ----------------------------------------------------------------


# -- writing -------------------------------------------------------------------------------------


def stateful_callbacks(trainer: Any) -> dict[str, Any]:
    """Callbacks whose state a checkpoint records: they have `state_dict` and `load_state_dict`."""
    found: dict[str, Any] = {}
    for callback in trainer.callback_handler.callbacks:
        if callable(getattr(callback, "state_dict", None)) and callable(
            getattr(callback, "load_state_dict", None)
        ):
            name = type(callback).__name__
            if name in found:
                raise FinetuneError(f"two {name} callbacks: a checkpoint could not tell their states apart")
            found[name] = callback
    return found


def early_stopping_of(trainer: Any) -> EarlyStopping | None:
    return next((c for c in trainer.callback_handler.callbacks if isinstance(c, EarlyStopping)), None)


def _barrier(trainer: Any) -> None:
    if process_count() > 1:
        trainer.accelerator.wait_for_everyone()


def save_checkpoint(trainer: Any, keep_last: int) -> Path:
    """Write `checkpoint-<step>` atomically (see the module docstring), then drop old ones.

    A full disk (or any write error) removes the partial folder and raises a `FinetuneError` that
    names the last complete checkpoint.
    """
    folder = Path(trainer.args.output_dir)
    final = folder / f"checkpoint-{trainer.state.global_step}"
    # Saved at this step already (e.g. a stop signal at an epoch's end)? Every process must answer
    # alike, so ask the training state, not the filesystem (the main process renames it).
    if getattr(trainer, "checkpoint_step", None) == trainer.state.global_step:
        return final
    partial = folder / f"{TMP_PREFIX}{final.name}"
    main = trainer.args.should_save
    if main:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    _barrier(trainer)
    try:
        _write_checkpoint(trainer, partial, main)
    except OSError as error:
        shutil.rmtree(partial, ignore_errors=True)
        raise checkpoint_write_error(error, final) from None
    _barrier(trainer)
    if main:
        if final.exists():  # a same-step checkpoint of an earlier attempt
            _remove(final)
        fsync_tree(partial)  # on disk before it is named complete, and the name after
        os.replace(partial, final)
        fsync_path(folder)
        rotate_checkpoints(folder, keep_last)
    trainer.checkpoint_step = trainer.state.global_step
    return final


def _write_checkpoint(trainer: Any, partial: Path, main: bool) -> None:
    trainer.save_model(str(partial), _internal_call=True)
    trainer._save_optimizer_and_scheduler(str(partial))
    trainer._save_scaler(str(partial))
    trainer._save_rng_state(str(partial))  # every process writes its own
    # every process hashes its replica: a checkpoint records that they agree (DDP's promise);
    # None with one process, or when the processes hold shards (FSDP, ZeRO-3)
    fingerprints = replica_fingerprints(trainer.model, trainer.recipe.distributed)
    early = early_stopping_of(trainer)
    best_weights = (
        gathered(early.best_state) if early is not None and early.best_state else None
    )  # all take part
    if not main:
        return
    if fingerprints and len(set(fingerprints)) > 1:
        print(
            f"warning: the processes hold different weights at step {trainer.state.global_step}: {fingerprints}"
        )
    (partial / "training_args.bin").unlink(missing_ok=True)  # a pickle; the recipe says it all
    best = write_best_weights(partial.parent, early, best_weights, trainer.model)
    trainer.state.save_to_json(str(partial / TRAINER_STATE_FILE))
    state = {
        "step": trainer.state.global_step,
        "epoch": trainer.state.epoch,
        "processes": process_count(),
        "weights_fingerprints": fingerprints,
        "best_weights": best,
        "callbacks": {name: cb.state_dict() for name, cb in stateful_callbacks(trainer).items()},
        **getattr(trainer, "run_state", {}),
    }
    for callback in stateful_callbacks(trainer).values():  # state too large for JSON (SWA's mean)
        if callable(getattr(callback, "save_files", None)):
            callback.save_files(partial)
    (partial / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")  # last


def checkpoint_write_error(error: OSError, final: Path) -> FinetuneError:
    import errno

    previous = complete_checkpoints(final.parent)
    last = f"the last complete one is {previous[-1].name}" if previous else "there is no complete one yet"
    if error.errno == errno.ENOSPC:
        what = f"the disk is full: could not write {final.name} to {final.parent}"
        fix = "free some space (or lower checkpoints.keep_last)"
    else:
        what = f"could not write {final.name} to {final.parent}: {error}"
        fix = "fix the folder's permissions or space"
    run_dir = final.parent.parent
    return FinetuneError(
        f"checkpoints: {what}; {last}. The partial checkpoint was removed; {fix}, then resume with "
        f"`finetune train --resume {run_dir}`."
    )


def write_best_weights(
    folder: Path, early: EarlyStopping | None, weights: dict[str, Any] | None, model: Any
) -> str | None:
    """Write the early-stopping best `weights` (made whole) to `best-<step>/` once (a loadable model folder)."""
    if early is None or weights is None or early.best_step is None:
        return None
    name = f"best-{early.best_step}"
    if (folder / name).is_dir():
        return name
    from safetensors.torch import save_file

    partial = folder / f"{TMP_PREFIX}{name}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    tensors = {key: value.contiguous() for key, value in weights.items()}
    save_file(tensors, str(partial / BEST_WEIGHTS_FILE), metadata={"format": "pt"})
    config = getattr(model, "config", None)
    if config is not None:
        config.save_pretrained(str(partial))
    fsync_tree(partial)
    os.replace(partial, folder / name)
    fsync_path(folder)
    return name


def _remove(path: Path) -> None:
    """Delete a folder so that a crash half-way never leaves something that looks complete."""
    doomed = path.with_name(f"{TMP_PREFIX}deleting-{path.name}")
    os.replace(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def rotate_checkpoints(folder: Path, keep_last: int) -> None:
    """Keep the newest `keep_last` checkpoints and the best weights they refer to; drop the rest."""
    found = complete_checkpoints(folder)
    kept = found[-keep_last:]
    for old in found[:-keep_last]:
        _remove(old)
    wanted = {read_state(c).get("best_weights") for c in kept}
    for best in folder.glob("best-*"):
        if best.is_dir() and best.name not in wanted:
            _remove(best)


def remove_checkpoints(run_dir: Path) -> None:
    """Delete a completed run's checkpoints (`model/` holds its result)."""
    folder = checkpoints_dir(run_dir)
    if folder.is_dir() and is_main_process():
        _remove(folder)


# -- restoring -------------------------------------------------------------------------------------


def restore_training_state(trainer: Any, checkpoint: Path) -> None:
    """Give every stateful callback its recorded state and early stopping its best weights.

    Called after the model is prepared and before the optimizer state is loaded, so that e.g.
    gradual unfreezing has made its blocks trainable again when training continues.
    """
    state = read_state(checkpoint)
    callbacks = stateful_callbacks(trainer)
    for name, callback_state in state.get("callbacks", {}).items():
        if name not in callbacks:  # e.g. a user's callback not passed this time: its state is dropped
            if is_main_process():
                print(f"warning: {checkpoint.name} holds the state of {name}, which this run does not use")
            continue
        callbacks[name].load_state_dict(callback_state)
        if callable(getattr(callbacks[name], "load_files", None)):
            callbacks[name].load_files(checkpoint)
    early = early_stopping_of(trainer)
    best = state.get("best_weights")
    if early is not None and best:
        from safetensors.torch import load_file

        early.best_state = load_file(str(checkpoint.parent / best / BEST_WEIGHTS_FILE))


def open_run_dir(
    recipe: Recipe, source: str | None, resume: str | Path | None = None, allow_change: bool = False
) -> tuple[Path, ResumePoint | None, list[str]]:
    """The run folder of this call: a new one (made by the main process, shared with the others), or
    the one to resume (`resume`, or `output.dir` under `checkpoints.resume: auto`).

    Returns the folder, the checkpoint to resume from (None for a new run) and the recipe changes
    the user allowed. Resuming drops the `metrics.jsonl` records logged after the checkpoint.
    """

    def decide() -> tuple[str, bool]:  # on the main process only: one answer for every process
        resume_dir = Path(resume) if resume is not None else auto_resume_dir(recipe)
        if resume_dir is not None:
            return str(resume_dir), True
        run_dir = create_run_dir(recipe)
        write_recipe(run_dir, recipe, source)
        return str(run_dir), False

    folder, resuming = share_from_main(decide, _on_cpu(recipe), recipe.distributed.timeout_minutes)
    resume_dir = Path(folder)
    if not resuming:
        return resume_dir, None, []
    point = find_resume_point(resume_dir)
    changes = check_same_recipe(resume_dir, recipe, allow_change)
    if is_main_process():
        remove_stale_partials(checkpoints_dir(resume_dir))
        truncate_metrics(resume_dir, point.step)
    return resume_dir, point, changes


def _on_cpu(recipe: Recipe) -> bool:
    import torch

    return recipe.training.cpu or not torch.cuda.is_available()
