"""Sweep files: which recipe keys `finetune sweep` varies, over which values, and how it searches.

A sweep file is a YAML file of its own (`*.sweep.yaml`), validated as strictly as a recipe:
unknown keys, search-space keys that are not recipe keys, empty or repeated choices and backwards
ranges are errors that name the key. Whether each value makes a valid recipe is checked against
the actual recipe before the first trial (see `finetune/search/sweep_file.py`).

```yaml
method: tpe            # grid | random | tpe
trials: 20
space:
  optimizer.lr: {log_uniform: [1e-5, 1e-4]}
  schedule.name: [linear, cosine]
  training.batch_size: [16, 32]
```
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from .base import Section
from .loading import _unknown_key_message, inner_model
from .schema import Recipe

# Keys a sweep sets itself (each trial's run folder) or fixes for the whole sweep (its metric).
RESERVED_KEYS = {
    "name": "the trials take the recipe's name",
    "output": "each trial gets its own run folder inside the sweep folder",
    "early_stopping.metric": "a sweep optimizes one metric; set `metric:` in the sweep file",
    "early_stopping.mode": "a sweep optimizes in one direction; set `direction:` in the sweep file",
}
MAX_GRID = 10_000


class RangeSpec(Section):
    """A range to draw numbers from: exactly one of `uniform`, `log_uniform`, `integer`."""

    uniform: tuple[float, float] | None = None
    """Floats drawn uniformly from [low, high]."""

    log_uniform: tuple[float, float] | None = None
    """Floats drawn uniformly on a log scale from [low, high], both > 0: learning rates, weight decay."""

    integer: tuple[int, int] | None = None
    """Integers from low to high, both included."""

    step: float | None = Field(None, gt=0)
    """Spacing of the values (`uniform` and `integer` only), e.g. 8 for batch sizes 8, 16, 24, 32.
    A range with a step has finitely many values, so grid search can use it."""

    @model_validator(mode="after")
    def _one_valid_range(self) -> RangeSpec:
        given = [kind for kind in ("uniform", "log_uniform", "integer") if getattr(self, kind) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of uniform, log_uniform, integer (e.g. {log_uniform: [1e-5, 1e-4]})"
                + (f"; got {', '.join(given)}" if given else "")
            )
        low, high = self.bounds
        if not low < high:
            raise ValueError(f"{self.kind}: the low end must be below the high end, got [{low}, {high}]")
        if self.kind == "log_uniform" and low <= 0:
            raise ValueError(f"log_uniform: both ends must be > 0, got [{low}, {high}]")
        if self.step is not None:
            if self.kind == "log_uniform":
                raise ValueError("step: a log_uniform range has no step; use uniform or integer")
            if self.kind == "integer" and self.step != int(self.step):
                raise ValueError(f"step: an integer range needs a whole step, got {self.step}")
            if self.step > high - low:
                raise ValueError(f"step: {self.step} is wider than the range [{low}, {high}]")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("uniform", "log_uniform", "integer") if getattr(self, k) is not None)

    @property
    def bounds(self) -> tuple[float, float]:
        return getattr(self, self.kind)

    def grid_values(self) -> list[float] | None:
        """Every value of a stepped or integer range (None for a continuous one)."""
        low, high = self.bounds
        if self.kind == "integer":
            step = int(self.step or 1)
            return list(range(int(low), int(high) + 1, step))
        if self.step is None or self.kind != "uniform":
            return None
        count = math.floor((high - low) / self.step + 1e-9) + 1
        return [round(low + i * self.step, 12) for i in range(count)]

    def probes(self) -> list[float]:
        """Values checked against the recipe before a sweep: both ends and one value inside."""
        low, high = self.bounds
        if self.kind == "integer":
            return [int(low), int(high)]
        middle = math.sqrt(low * high) if self.kind == "log_uniform" else (low + high) / 2
        return [low, middle, high]


Dimension = list[Any] | RangeSpec


class PruningSection(Section):
    """`pruning:` stop trials that do worse than the others at the same point (Optuna's MedianPruner)."""

    enabled: bool = True
    """Stop a trial when its best validation metric so far is worse than the median of earlier trials
    at the same evaluation (Optuna's `MedianPruner`). Needs at least two evaluations per trial."""

    startup_trials: int = Field(2, ge=0)
    """Trials that always run to the end, to set the median, before any trial is pruned."""

    warmup_evaluations: int = Field(1, ge=0)
    """Evaluations of each trial before it can be pruned (the first is noisy)."""


class SweepFile(Section):
    """A `*.sweep.yaml` file: the search space over recipe keys, the method and the budget."""

    name: str | None = None
    """Sweep name, used in the default sweep-folder name; defaults to the file's name."""

    method: Literal["grid", "random", "tpe"] = "tpe"
    """`grid`: every combination of the listed values, in order. `random`: values drawn at random.
    `tpe`: Optuna's Tree-structured Parzen Estimator (Bergstra et al., 2011), which draws where earlier
    trials did well."""

    trials: int | None = Field(None, ge=1)
    """How many trials to finish (completed and pruned ones count; failed ones do not). Required for
    random and tpe; for grid, at most (and by default) the number of combinations."""

    metric: str | None = None
    """Validation metric to optimize; default: the recipe's `early_stopping.metric`. Set here, it is also
    the metric each trial's early stopping watches (and best.yaml keeps it)."""

    direction: Literal["auto", "max", "min"] = "auto"
    """Whether larger (`max`) or smaller (`min`) is better; `auto` is min for loss/mse, max otherwise."""

    seed: int = 0
    """Seed of the random and TPE samplers: trial N draws from (seed, N), so workers sharing a sweep
    do not repeat each other's draws and a resumed sweep draws new ones."""

    pruning: PruningSection = Field(default_factory=PruningSection)

    space: dict[str, Dimension]
    """Recipe keys (dotted, as on the command line) and their values: a list of choices
    (`schedule.name: [linear, cosine]`) or a range (`optimizer.lr: {log_uniform: [1e-5, 1e-4]}`)."""

    @field_validator("space", mode="before")
    @classmethod
    def _valid_space(cls, space: Any) -> dict[str, Dimension]:
        if not isinstance(space, dict) or not space:
            raise ValueError("must be a mapping of recipe keys to values, e.g. {optimizer.lr: [1e-5, 3e-5]}")
        problems, parsed = [], {}
        for key, values in space.items():
            try:
                check_recipe_key(str(key))
                parsed[str(key)] = parse_dimension(values)
            except ValueError as error:
                problems.append(f"space.{key}: {error}")
        if problems:
            raise ValueError("\n".join(problems))
        return parsed

    @model_validator(mode="after")
    def _method_fits_space(self) -> SweepFile:
        problems = []
        if self.method == "grid":
            for key, dimension in self.space.items():
                if isinstance(dimension, RangeSpec) and dimension.grid_values() is None:
                    problems.append(
                        f"space.{key}: grid search needs a list of values or a range with a `step`; "
                        f"use method: random or tpe for a {dimension.kind} range"
                    )
        elif self.trials is None:
            problems.append(f"trials: a {self.method} sweep needs a trial budget, e.g. trials: 20")
        if problems:
            raise ValueError("\n".join(problems))
        if self.method == "grid" and self.grid_size() > MAX_GRID:
            raise ValueError(f"space: the grid has {self.grid_size():,} combinations (at most {MAX_GRID:,})")
        return self

    def grid(self) -> dict[str, list[Any]]:
        """Each key's values for grid search (ranges with a step expanded)."""
        return {
            key: dimension.grid_values() if isinstance(dimension, RangeSpec) else dimension
            for key, dimension in self.space.items()
        }

    def grid_size(self) -> int:
        return math.prod(len(values) for values in self.grid().values())

    def budget(self) -> int:
        """Trials to finish: `trials`, and for grid at most the number of combinations."""
        if self.method == "grid":
            return min(self.trials or self.grid_size(), self.grid_size())
        assert self.trials is not None  # checked by the validator
        return self.trials


def parse_dimension(values: Any) -> Dimension:
    """A list of choices (non-empty, no repeats) or a range mapping."""
    if isinstance(values, RangeSpec):
        return values
    if isinstance(values, list):
        if not values:
            raise ValueError("the list of values is empty")
        labels = [json.dumps(v, sort_keys=True) for v in values]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ValueError(f"values repeat: {', '.join(repeated)}")
        return values
    if isinstance(values, dict):
        try:
            return RangeSpec.model_validate(values)
        except ValidationError as error:
            raise ValueError("; ".join(_short_error(e) for e in error.errors(include_url=False))) from None
    raise ValueError(
        f"give a list of values ([1e-5, 3e-5]) or a range ({{log_uniform: [1e-5, 1e-4]}}), got {values!r}"
    )


def _short_error(item: dict) -> str:
    where = ".".join(str(p) for p in item["loc"])
    message = item["msg"].removeprefix("Value error, ")
    if item["type"] == "extra_forbidden":
        message = _unknown_key_message(str(item["loc"][-1]), RangeSpec)
    return f"{where}: {message}" if where else message


def check_recipe_key(key: str) -> None:
    """A dotted key must name a recipe key (or reach into a mapping-valued key, like `layer_lr.lrs.head`)."""
    for reserved, why in RESERVED_KEYS.items():
        if key == reserved or key.startswith(reserved + "."):
            raise ValueError(f"cannot be swept: {why}")
    model: type[BaseModel] | None = Recipe
    parts = key.split(".")
    for position, part in enumerate(parts):
        if model is None:
            raise ValueError(f"'{'.'.join(parts[:position])}' is a value, not a section: it has no '{part}'")
        if part not in model.model_fields:
            where = f" in `{'.'.join(parts[:position])}`" if position else ""
            raise ValueError(f"not a recipe key{where}: {_unknown_key_message(part, model)}")
        annotation = model.model_fields[part].annotation
        if _is_mapping(annotation) and inner_model(annotation) is None:
            return  # `layer_lr.lrs.<block>`: the recipe checks the block names
        model = inner_model(annotation)


def _is_mapping(annotation: Any) -> bool:
    origin = getattr(annotation, "__origin__", None)
    if origin is dict:
        return True
    return any(_is_mapping(arg) for arg in getattr(annotation, "__args__", ()) or ())
