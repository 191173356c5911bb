"""Sweep files and their search space: finding, reading and checking a sweep file against the recipe.

A sweep file (`finetune/recipe/sweep.py` holds its schema) is found by path or by the name of one
shipped in `recipes/sweeps/`; every problem is reported at once, naming the key. Each trial's
recipe is the base recipe with the trial's values set, as command-line overrides would set them;
every listed value (and both ends of every range) is checked to make a valid recipe before the
first trial.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from finetune.errors import FinetuneError, RecipeError
from finetune.recipe import Recipe, parse_yaml, shipped_recipes_dir, validate_recipe
from finetune.recipe.loading import deep_merge
from finetune.recipe.sweep import RangeSpec, SweepFile

SWEEP_SUFFIX = ".sweep.yaml"


class SweepError(FinetuneError):
    """A sweep file or sweep folder is invalid."""


def find_sweep_file(reference: str) -> Path:
    """A sweep file by path, or the name of one shipped in `recipes/sweeps/` (`demo-lr`)."""
    path = Path(reference)
    if path.is_file():
        return path.resolve()
    shipped = shipped_recipes_dir() / "sweeps"
    name = reference if reference.endswith(SWEEP_SUFFIX) else f"{reference}{SWEEP_SUFFIX}"
    if (shipped / name).is_file():
        return (shipped / name).resolve()
    names = sorted(p.name.removesuffix(SWEEP_SUFFIX) for p in shipped.glob(f"*{SWEEP_SUFFIX}"))
    raise SweepError(f"sweep file '{reference}' not found (nor in {shipped}; shipped: {', '.join(names)})")


def load_sweep_file(reference: str | Path) -> SweepFile:
    """Read and validate a sweep file; every problem is reported at once, naming the key."""
    path = find_sweep_file(str(reference))
    data = parse_yaml(path.read_text(encoding="utf-8"), str(path))
    if not isinstance(data, dict):
        raise SweepError(f"{path}: a sweep file must be a mapping (method, trials, space, ...)")
    data.setdefault("name", path.name.removesuffix(SWEEP_SUFFIX).removesuffix(".yaml"))
    return validate_sweep_file(data, str(path))


def validate_sweep_file(data: dict, source: str = "sweep file") -> SweepFile:
    try:
        return SweepFile.model_validate(data)
    except ValidationError as error:
        lines = []
        for item in error.errors(include_url=False):
            where = ".".join(str(p) for p in item["loc"])
            message = item["msg"].removeprefix("Value error, ")
            if item["type"] == "extra_forbidden":
                from finetune.recipe.loading import _unknown_key_message

                owner = SweepFile if len(item["loc"]) == 1 else None
                message = _unknown_key_message(str(item["loc"][-1]), owner)
            for line in message.split("\n"):
                # messages of the `space` check name their own keys (space.optimizer.lr: ...)
                lines.append(line if line.startswith("space.") or not where else f"{where}: {line}")
        body = "\n".join(f"  - {source}: {line}" for line in lines)
        count = len(lines)
        raise SweepError(
            f"sweep file is invalid ({count} problem{'s' if count > 1 else ''}):\n{body}"
        ) from None


def sweep_recipe(recipe: Recipe, spec: SweepFile, source: str) -> Recipe:
    """The base recipe with the sweep's metric and direction (they become early stopping's)."""
    updates = {}
    if spec.metric is not None:
        updates["metric"] = spec.metric
    if spec.direction != "auto":
        updates["mode"] = spec.direction
    if not updates:
        return recipe
    data = recipe.to_yaml_dict()
    data["early_stopping"].update(updates)
    try:
        return validate_recipe(data, source="recipe")
    except RecipeError as error:
        problems = [line.strip().removeprefix("- recipe: ") for line in str(error).splitlines()[1:]]
        raise SweepError(
            f"{source}: metric/direction: they do not fit the recipe: {'; '.join(problems)}"
        ) from None


def trial_recipe(base: Recipe, params: dict[str, Any], run_dir: Path | None, source: str) -> Recipe:
    """The base recipe with the trial's values set (as command-line overrides would) and its run folder."""
    data = base.to_yaml_dict()
    provenance: dict[str, str] = {}
    for key, value in params.items():
        nested: Any = value
        for part in reversed(key.split(".")):
            nested = {part: nested}
        data = deep_merge(data, nested, source, provenance)
    data["output"]["dir"] = str(run_dir) if run_dir is not None else None
    return validate_recipe(data, provenance, source)


def check_space(base: Recipe, spec: SweepFile, source: str) -> None:
    """Every listed value (and both ends of every range) must make a valid recipe; report all that do not."""
    problems = []
    for key, dimension in spec.space.items():
        values = dimension.probes() if isinstance(dimension, RangeSpec) else dimension
        for value in values:
            try:
                trial_recipe(base, {key: value}, None, source)
            except RecipeError as error:
                reason = "; ".join(
                    line.strip().removeprefix("- ").removeprefix(f"{source}: ")
                    for line in str(error).splitlines()[1:]
                )
                problems.append(f"space.{key}: value {value!r} does not make a valid recipe: {reason}")
    if problems:
        body = "\n".join(f"  - {source}: {line}" for line in problems)
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        raise SweepError(f"sweep file does not fit the recipe ({count}):\n{body}")
