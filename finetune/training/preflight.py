"""`finetune validate`: the checks `finetune train` makes before its first step that need no weights.

The checks are training's own (data/files.py, data/columns.py, data/splits.py, model/loading.py, layers/freezing.py, layers/reinit.py, optimizer/param_groups.py, training/metrics.py,
training/defaults.py), run on less: each data file's first row instead of the whole file, and the model's
architecture built from its config on the meta device instead of the loaded model. Every problem
is collected, so one `validate` shows all of them. Not checked: what needs every row (labels,
empty texts, the evaluation cadence) or the weights, and hub datasets (`data.hub`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from finetune.errors import FinetuneError
from finetune.recipe import Recipe


def attempt(problems: list[str], check: Callable[..., Any], *args: Any) -> Any:
    """Run one check; its error becomes a line of `problems` (and the result None)."""
    try:
        return check(*args)
    except FinetuneError as error:
        problems.append(str(error))
        return None


def recipe_problems(recipe: Recipe) -> list[str]:
    """Every problem training would find before loading weights, in the order it would find them."""
    from finetune.training.metrics import check_metric_code

    problems: list[str] = []
    evaluation = recipe.evaluation
    attempt(problems, check_metric_code, evaluation.extra_metrics, evaluation.trust_remote_code)
    problems += data_problems(recipe)
    problems += model_problems(recipe)
    if recipe.distill.enabled:  # the teacher exists and loads (distill/teacher.py)
        from finetune.distill.teacher import teacher_config

        attempt(problems, teacher_config, recipe.distill)
    return list(dict.fromkeys(problems))  # one architecture error may come from several sections


def data_problems(recipe: Recipe) -> list[str]:
    """The data files exist, are readable, and have the recipe's columns (first row only)."""
    from finetune.data.splits import no_data_error

    spec, problems = recipe.data, []
    if spec.hub is not None:  # hub datasets are checked when `train` downloads them
        return problems
    if spec.train is None:
        return [str(no_data_error(recipe.model.task))]
    for split in ("train", "validation"):
        if getattr(spec, split) is not None:
            attempt(problems, check_split, recipe, split)
    return problems


def check_split(recipe: Recipe, split: str) -> None:
    """One data file: found, readable, and (when it has columns) holding the recipe's columns."""
    from finetune.data.columns import canonical_columns
    from finetune.data.files import check_readable, read_head, resolve_path
    from finetune.data.tokens import token_file_format, word_columns

    spec = recipe.data
    path = resolve_path(spec, getattr(spec, split), split)
    if recipe.model.task != "token_classification":
        canonical_columns(read_head(spec, path, split), spec, str(path))
    elif token_file_format(spec, path) == "conll":  # words and tags by position: no columns to check
        check_readable(path, spec.encoding, split)
    else:
        word_columns(read_head(spec, path, split), spec, str(path))


def model_problems(recipe: Recipe) -> list[str]:
    """The model name resolves to a config, and the recipe fits that model's size and layers."""
    from finetune.model.loading import check_max_length, load_config
    from finetune.training.defaults import resolve_auto

    problems: list[str] = []
    labels = 1 if recipe.model.task == "regression" else 2  # the head's size matters to no check here
    config = attempt(problems, load_config, recipe.model, labels, None)
    if config is None:
        return problems
    attempt(problems, check_max_length, recipe.data.max_length, config, None, recipe.model.name)
    resolution = attempt(problems, resolve_auto, recipe, config, None)
    if resolution is not None:
        problems += layer_problems(resolution.recipe, config)
    return problems


def layer_problems(recipe: Recipe, config: Any) -> list[str]:
    """A head for the task, and `freeze:`, `reinit:`, `layer_lr:`, `peft:` against the model's layers,
    checked on its architecture (no weights) as training applies them to the loaded model."""
    from finetune.layers.freezing import apply_freeze, needs_anatomy
    from finetune.layers.reinit import reinit_blocks
    from finetune.model.anatomy import known_anatomy, model_anatomy
    from finetune.model.loading import model_skeleton
    from finetune.model.peft import add_adapters
    from finetune.optimizer.param_groups import block_learning_rates

    problems: list[str] = []
    model = attempt(problems, model_skeleton, recipe.model, config)
    layered = needs_anatomy(recipe.freeze) or recipe.reinit.is_active() or recipe.layer_lr.is_active()
    anatomy = attempt(problems, model_anatomy, model) if layered and model else None
    if problems:  # no model, or layers finetune does not know: nothing else can be checked
        return problems
    anatomy = anatomy or known_anatomy(model)
    if recipe.reinit.is_active():
        attempt(problems, reinit_blocks, recipe.reinit, anatomy)
    if recipe.layer_lr.is_active():
        attempt(problems, block_learning_rates, anatomy, recipe.optimizer.lr, recipe.layer_lr)
    frozen = attempt(problems, apply_freeze, model, recipe.freeze, anatomy)
    if frozen is not None and recipe.peft.enabled:
        attempt(problems, add_adapters, model, recipe.peft, recipe.model.task, frozen.frozen_blocks)
    return problems


def check_recipe(recipe: Recipe, source: str) -> None:
    """Raise one FinetuneError with every problem `recipe_problems` finds; return when there is none."""
    problems = recipe_problems(recipe)
    if len(problems) == 1:
        raise FinetuneError(problems[0])
    if problems:
        items = ["  - " + problem.replace("\n", "\n    ") for problem in problems]
        raise FinetuneError(
            "\n".join([f"recipe '{source}' cannot train ({len(problems)} problems):", *items])
        )
