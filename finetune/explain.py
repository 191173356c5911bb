"""`finetune explain`: what a recipe will do to a model, shown before any training."""

from __future__ import annotations

from typing import Any

import yaml

from .recipe import Recipe


def infer_num_labels(recipe: Recipe) -> int:
    """Number of labels from the recipe's training data when it can be read; else 2."""
    if recipe.model.task == "regression":
        return 1
    if recipe.data.train is None and recipe.data.hub is None:
        return 2
    from .data import load_task_data

    return load_task_data(recipe.data, recipe.model.task, recipe.training.seed).num_labels


def block_rows(model: Any) -> list[dict[str, Any]]:
    """One row per anatomy block: parameter count and trainable share."""
    from .anatomy import model_anatomy

    anatomy = model_anatomy(model)
    parameters = dict(model.named_parameters())
    rows = []
    for block, names in anatomy.blocks.items():
        count = sum(parameters[n].numel() for n in names)
        trainable = sum(parameters[n].numel() for n in names if parameters[n].requires_grad)
        state = "trainable" if trainable == count else ("frozen" if trainable == 0 else "partly frozen")
        rows.append({"block": block, "parameters": count, "trainable": trainable, "state": state})
    return rows


def format_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    cells = [[str(row[c]) if not isinstance(row[c], int) else f"{row[c]:,}" for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    line = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths))  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def explain(recipe: Recipe, num_labels: int | None = None) -> list[dict[str, Any]]:
    """Print the resolved recipe and, for the loaded model, which blocks train."""
    from .modeling import load_model
    from .pipeline import freeze_model

    print("# resolved recipe")
    print(yaml.safe_dump(recipe.to_yaml_dict(), sort_keys=False), end="")
    labels = num_labels or infer_num_labels(recipe)
    model = load_model(recipe.model, labels, None, recipe.regularization)
    summary = freeze_model(model, recipe)
    rows = block_rows(model)
    print(f"\n# model: {recipe.model.name} ({model.config.model_type}), {labels} output(s)")
    print(format_table(rows, ["block", "parameters", "trainable", "state"]))
    print(f"\n{summary.line()}")
    return rows
