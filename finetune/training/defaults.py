"""`auto` recipe values, resolved for the model and the data a run actually loads.

A value a recipe sets always wins. `auto` (the default of the keys below) becomes a number once
the model's configuration and the training set are known; the run prints each resolution, writes
the number to its `recipe.yaml` (so re-running that file reproduces the run) and `finetune explain`
shows it. The rules and the measurements behind them are in docs/defaults.md.

- `optimizer.lr`: 2e-5 x (768 / hidden size)^2, to one significant digit. Anchored at BERT-base's
  2e-5 (Devlin et al., 2019) and at the best LR measured for MiniLM-L6 (hidden 384) on GLUE
  (docs/defaults.md); it gives BERT-large 1e-5 and BERT-mini (256) 2e-4, in line with the
  ranges their authors report (Turc et al., 2019). Narrow models need larger steps.
- `training.epochs`: 3; for regression, more when the training set is small, so that the run takes
  at least `MIN_REGRESSION_STEPS` optimizer steps (at most `MAX_EPOCHS` epochs). Measured on 500
  rows of GLUE (docs/defaults.md): STS-B went from Pearson 0.55 at 3 epochs (45 steps) to 0.77 at
  10 (150 steps), while SST-2 and MRPC gained nothing from 10 epochs (-1.0 and -4.2 points), so
  classification keeps the 3-epoch habit.
- `loss.class_weights`: a `{label: weight}` mapping counted on the training labels
  (data/class_weights.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from finetune.recipe import Recipe
from finetune.recipe.base import AUTO
from finetune.recipe.loading import validate_recipe

REFERENCE_WIDTH, REFERENCE_LR = 768, 2e-5  # BERT-base and its usual fine-tuning LR
LR_EXPONENT = 2  # lr grows with (reference width / width) ** this (fitted on MiniLM-L6, see docs)
DEFAULT_EPOCHS, MIN_REGRESSION_STEPS, MAX_EPOCHS = 3, 150, 10
AUTO_KEYS = (("optimizer", "lr"), ("training", "epochs"), ("loss", "class_weights"))


@dataclass
class Resolution:
    """The recipe with every `auto` replaced, and one line per replacement for the user."""

    recipe: Recipe
    notes: list[str] = field(default_factory=list)


def auto_lr(config: Any) -> tuple[float, str]:
    """The peak LR for a model configuration, and why."""
    width = getattr(config, "hidden_size", None) or getattr(config, "dim", None)
    kind = getattr(config, "model_type", "model")
    if not isinstance(width, int) or width <= 0:
        return REFERENCE_LR, f"{kind} has no hidden size in its config: BERT-base's {REFERENCE_LR:g}"
    lr = float(f"{REFERENCE_LR * (REFERENCE_WIDTH / width) ** LR_EXPONENT:.1g}")
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layers", None)
    depth = f"{layers} layers, " if layers else ""
    return lr, f"{kind}: {depth}hidden {width}; 2e-5 x (768/{width})^{LR_EXPONENT}"


def auto_epochs(task: str, train_examples: int, examples_per_step: int) -> tuple[float, str]:
    """Epochs for a task and training set: 3, or for regression enough for `MIN_REGRESSION_STEPS` steps."""
    if task != "regression":
        return float(DEFAULT_EPOCHS), f"{task}: the usual {DEFAULT_EPOCHS}"
    per_epoch = max(1, math.ceil(train_examples / examples_per_step))
    needed = math.ceil(MIN_REGRESSION_STEPS / per_epoch)
    epochs = min(MAX_EPOCHS, max(DEFAULT_EPOCHS, needed))
    why = f"regression, {train_examples:,} training examples, {per_epoch} steps per epoch"
    if epochs == DEFAULT_EPOCHS:
        return float(epochs), f"{why}: {DEFAULT_EPOCHS} epochs reach {MIN_REGRESSION_STEPS} steps"
    return float(epochs), f"{why}: at least {MIN_REGRESSION_STEPS} steps, at most {MAX_EPOCHS} epochs"


def examples_per_step(recipe: Recipe, processes: int = 1) -> int:
    """Training examples per optimizer step over all processes."""
    per_device, accumulation = recipe.training.batch_plan(processes)
    return per_device * accumulation * processes


def resolve_auto(recipe: Recipe, config: Any, train_examples: int | None, processes: int = 1) -> Resolution:
    """Replace the recipe's `auto` values for this model configuration and training-set size.

    Without a training-set size (explain with no data) `training.epochs: auto` becomes 3.
    A resolved value that breaks another key's check (e.g. `schedule.min_lr` above the resolved LR)
    is reported as a recipe error naming that key.
    """
    data, notes = recipe.to_yaml_dict(), []
    if data["optimizer"]["lr"] == AUTO:
        data["optimizer"]["lr"], why = auto_lr(config)
        notes.append(f"optimizer.lr: auto -> {data['optimizer']['lr']:g} ({why})")
    if data["training"]["epochs"] == AUTO:
        if train_examples is None:
            epochs, why = float(DEFAULT_EPOCHS), "no training data to count"
        else:
            per_step = examples_per_step(recipe, processes)
            epochs, why = auto_epochs(recipe.model.task, train_examples, per_step)
        data["training"]["epochs"] = epochs
        notes.append(f"training.epochs: auto -> {epochs:g} ({why})")
    if not notes:
        return Resolution(recipe)
    return Resolution(validate_recipe(data, source="the recipe with `auto` resolved"), notes)


def resolve_class_weights(recipe: Recipe, labels: Any, label_names: list[str] | None) -> Resolution:
    """`loss.class_weights: auto` -> the `{label: weight}` mapping counted on the training labels
    (data/class_weights.py); a hand-written mapping is checked against the labels."""
    from finetune.data.class_weights import resolve_weights

    weights, note = resolve_weights(recipe.loss, recipe.model.task, labels, label_names)
    if note is None:
        return Resolution(recipe)
    data = recipe.to_yaml_dict()
    data["loss"]["class_weights"] = weights
    return Resolution(validate_recipe(data, source="the recipe with `auto` resolved"), [note])


def adopt_resolved(recipe: Recipe, resolved: Recipe) -> Recipe:
    """`recipe` with its `auto` values taken from `resolved` (a resumed run's own recipe.yaml)."""
    data, taken = recipe.to_yaml_dict(), resolved.to_yaml_dict()
    for section, key in AUTO_KEYS:
        if data[section][key] == AUTO:
            data[section][key] = taken[section][key]
    return validate_recipe(data, source="the recipe with the run's resolved values")


def resolve_for_planning(recipe: Recipe, train_examples: int | None) -> Resolution:
    """`resolve_auto` for commands that plan without loading the model (plot-schedule): its config only."""
    if recipe.optimizer.lr != AUTO and recipe.training.epochs != AUTO:
        return Resolution(recipe)
    return resolve_auto(recipe, model_config(recipe) if recipe.optimizer.lr == AUTO else None, train_examples)


def model_config(recipe: Recipe) -> Any:
    """The model's configuration alone (no weights): what `auto_lr` needs, for commands that do not train."""
    from transformers import AutoConfig

    from finetune.model.loading import _from_pretrained, resolve_model_path

    spec = recipe.model
    options = {"revision": spec.revision, "trust_remote_code": spec.trust_remote_code}
    return _from_pretrained(AutoConfig, resolve_model_path(spec.name), "configuration", **options)
