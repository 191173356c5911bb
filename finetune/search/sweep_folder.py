"""A sweep folder: created for a new sweep, reopened to resume one, never taken over by another sweep.

The folder holds the base recipe and the resolved sweep file (`recipe.yaml`, `sweep.yaml`) next to
Optuna's storage (`study.db`); `finetune sweep --resume DIR` reads all three back, and the same
recipe and sweep file given again with `--output DIR` continue the sweep, while different ones are
refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from finetune.recipe import Recipe
from finetune.recipe.sweep import SweepFile
from finetune.search.sweep_file import SweepError, check_space, load_sweep_file, sweep_recipe

BASE_RECIPE_FILE = "recipe.yaml"
STORAGE_FILE = "study.db"
SWEEP_FILE = "sweep.yaml"


@dataclass
class SweepRun:
    folder: Path
    recipe: Recipe  # the base recipe (with the sweep's metric)
    spec: SweepFile
    source: str  # where the sweep file came from, for messages


def start_sweep(
    recipe: Recipe, spec: SweepFile, output: Path | None, source: str, recipe_source: str | None = None
) -> SweepRun:
    """Check the sweep against the recipe and create its folder (or reopen it to resume)."""
    from finetune.runs.folders import default_run_dir, write_recipe

    base = sweep_recipe(recipe, spec, source)
    check_space(base, spec, source)
    folder = output or default_run_dir(
        base.model_copy(update={"name": f"sweep-{base.name or 'recipe'}-{spec.name or 'sweep'}"})
    )
    if folder.exists():
        check_same_sweep(folder, base, spec)
    else:
        folder.mkdir(parents=True)
        write_recipe(folder, base, recipe_source)
        (folder / SWEEP_FILE).write_text(
            f"# Resolved sweep file (from {source}). Resume: finetune sweep --resume {folder}\n"
            + yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False),
            encoding="utf-8",
        )
    return SweepRun(folder=folder, recipe=base, spec=spec, source=source)


def reopen_sweep(folder: Path) -> SweepRun:
    """The sweep stored in a sweep folder, for `finetune sweep --resume DIR`."""
    from finetune.recipe import load_recipe

    if not (folder / STORAGE_FILE).is_file() or not (folder / SWEEP_FILE).is_file():
        raise SweepError(f"--resume {folder}: not a sweep folder (no {STORAGE_FILE} and {SWEEP_FILE} in it)")
    spec = load_sweep_file(folder / SWEEP_FILE)
    recipe = load_recipe(folder / BASE_RECIPE_FILE)
    return SweepRun(folder=folder, recipe=recipe, spec=spec, source=str(folder / SWEEP_FILE))


def check_same_sweep(folder: Path, recipe: Recipe, spec: SweepFile) -> None:
    """An existing folder can only be continued by the same recipe and sweep; never overwritten."""
    from finetune.recipe import load_recipe

    if not (folder / STORAGE_FILE).is_file():
        raise SweepError(
            f"--output {folder} exists and is not a sweep folder; finetune never overwrites it. "
            f"Choose a new folder."
        )
    stored = load_recipe(folder / BASE_RECIPE_FILE).to_yaml_dict()
    stored_spec = load_sweep_file(folder / SWEEP_FILE).model_dump(mode="json")
    changed = _differences(stored, recipe.to_yaml_dict()) + [
        f"sweep {k}" for k in _differences(stored_spec, spec.model_dump(mode="json"))
    ]
    if changed:
        raise SweepError(
            f"--output {folder} holds a sweep with a different recipe or sweep file (changed: "
            f"{', '.join(changed[:8])}). Resume it with `finetune sweep --resume {folder}`, or choose a new folder."
        )


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [d for k in keys for d in _differences(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [prefix.rstrip(".")]
