"""Resuming a run folder: the checkpoint to continue from, the recipe it was started with, and
which folder a `finetune train` call writes (a new one, or the one it resumes).

A run resumes only with the recipe it was started with (output, logging and checkpoint keys aside),
unless the user allows the change. A new run that fails before its first step leaves no folder.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune.errors import FinetuneError
from finetune.recipe import Recipe, validate_recipe
from finetune.recipe.loading import parse_yaml
from finetune.runs.folders import (
    CHECKPOINTS_DIR,
    DATA_FILES,
    METRICS_FILE,
    RECIPE_FILE,
    RESULTS_FILE,
    checkpoints_dir,
    complete_checkpoints,
    read_metrics,
    read_state,
)

# What a new run writes before its first training step (besides `.<name>.partial` files): the only
# entries of a folder that `discard_unstarted_run` removes.
UNSTARTED_ENTRIES = (RECIPE_FILE, DATA_FILES, METRICS_FILE, CHECKPOINTS_DIR, "tensorboard")


# Keys a resumed run may change: where and how it writes, not what it trains.
RESUME_MAY_CHANGE = (
    "name",
    "output",
    "checkpoints",
    "training.logging_steps",
    "training.dataloader_workers",
    "evaluation.trust_remote_code",  # a run started before the key existed opts in when it resumes
)


@dataclass
class ResumePoint:
    """The checkpoint a run continues from, and what it recorded."""

    checkpoint: Path
    step: int
    state: dict[str, Any]


def find_resume_point(run_dir: Path) -> ResumePoint:
    """The newest complete checkpoint of a run folder, or an error that says why there is none."""
    if not (run_dir / RECIPE_FILE).is_file():
        raise FinetuneError(f"--resume: {run_dir} is not a run folder (it has no {RECIPE_FILE})")
    found = complete_checkpoints(checkpoints_dir(run_dir))
    if not found:
        status = _run_status(run_dir)
        if status == "completed":
            raise FinetuneError(
                f"--resume: the run in {run_dir} completed; there is nothing to resume (its checkpoints were "
                f"deleted, `model/` holds the result). Start a new run to train further."
            )
        raise FinetuneError(
            f"--resume: {run_dir} has no complete checkpoint to resume from (the run stopped before its "
            f"first one; see checkpoints.every_steps / checkpoints.every_epoch). Start it again instead: "
            f"with a new output.dir, or in the same folder once it is deleted (rm -r {run_dir})."
        )
    checkpoint = found[-1]
    state = read_state(checkpoint)
    return ResumePoint(checkpoint=checkpoint, step=int(state["step"]), state=state)


def _run_status(run_dir: Path) -> str | None:
    path = run_dir / RESULTS_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8")).get("status")


def recipe_differences(before: dict[str, Any], after: dict[str, Any], prefix: str = "") -> list[str]:
    """`key.path: old -> new` for every leaf that differs, skipping `RESUME_MAY_CHANGE` keys."""
    lines = []
    for key in sorted(set(before) | set(after)):
        path = f"{prefix}{key}"
        if path in RESUME_MAY_CHANGE:
            continue
        old, new = before.get(key), after.get(key)
        if new == "auto":  # resolves to the run's own value (defaults.adopt_resolved)
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            lines += recipe_differences(old, new, f"{path}.")
        elif old != new:
            lines.append(f"{path}: {json.dumps(old)} -> {json.dumps(new)}")
    return lines


def saved_recipe(run_dir: Path) -> Recipe:
    """The resolved recipe a run folder was started with."""
    path = run_dir / RECIPE_FILE
    data = parse_yaml(path.read_text(encoding="utf-8"), str(path)) or {}
    return validate_recipe(data, source=str(path))


def check_same_recipe(run_dir: Path, recipe: Recipe, allow_change: bool) -> list[str]:
    """Refuse to resume with a recipe that trains differently, showing the difference.

    Returns the differences (empty when the recipes agree), which `allow_change` lets through.
    """
    differences = recipe_differences(saved_recipe(run_dir).to_yaml_dict(), recipe.to_yaml_dict())
    if differences and not allow_change:
        shown = "\n  ".join(differences)
        raise FinetuneError(
            f"--resume: this recipe differs from the one {run_dir} was started with:\n  {shown}\n"
            f"Resume with the run's own recipe (`finetune train --resume {run_dir}` without a recipe), "
            f"or pass --allow-recipe-change to continue with these changes knowingly."
        )
    return differences


def auto_resume_dir(recipe: Recipe) -> Path | None:
    """With `checkpoints.resume: auto`: the `output.dir` to continue, or None to start it fresh."""
    if recipe.checkpoints.resume != "auto" or recipe.output.dir is None:
        return None
    run_dir = Path(recipe.output.dir)
    if not run_dir.exists():
        return None
    if not complete_checkpoints(checkpoints_dir(run_dir)) and _run_status(run_dir) != "completed":
        raise FinetuneError(
            f"output.dir: {run_dir} exists but holds no checkpoint to resume (checkpoints.resume: auto); "
            f"finetune never overwrites a run: choose a new output.dir or delete the folder"
        )
    return run_dir


def discard_unstarted_run(run_dir: Path) -> bool:
    """After a new run failed: remove its folder if the run took no training step, holds no checkpoint
    and nothing but what the run wrote (a file someone put there keeps it). Returns whether it did."""
    if not run_dir.is_dir() or complete_checkpoints(checkpoints_dir(run_dir)) or _took_a_step(run_dir):
        return False
    names = {p.name.removeprefix(".").removesuffix(".partial") for p in run_dir.iterdir()}
    if not names <= set(UNSTARTED_ENTRIES):
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    return True


def _took_a_step(run_dir: Path) -> bool:
    try:
        return any(record.get("step", 0) > 0 for record in read_metrics(run_dir))
    except ValueError:  # a half-written line: something ran, keep it
        return True


def load_train_recipe(
    reference: str | None, overrides: list[str], resume: str | None
) -> tuple[Recipe, str, list[str]]:
    """The recipe `finetune train`/`launch` runs, its source file and the overrides applied to it.

    Resuming, the recipe may be left out: the run folder's own `recipe.yaml` is used (overrides still
    apply, e.g. `finetune train --resume RUN training.logging_steps=50`).
    """
    from finetune.recipe import find_recipe, load_recipe

    if resume is not None and reference is not None and "=" in reference and not Path(reference).exists():
        overrides, reference = [reference, *overrides], None  # an override, not a recipe
    if reference is None:
        if resume is None:
            raise FinetuneError(
                "finetune train: give a recipe (a file or a shipped name), or --resume RUN_DIR"
            )
        reference = str(Path(resume) / RECIPE_FILE)
        if not Path(reference).is_file():
            raise FinetuneError(f"--resume: {resume} is not a run folder (it has no {RECIPE_FILE})")
    return load_recipe(reference, overrides), str(find_recipe(reference)), overrides
