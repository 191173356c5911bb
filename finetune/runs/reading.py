"""A finished run folder read back, and its values shown as people read them.

Shared by `report.md` (runs/report.py), the model card (runs/model_card.py) and
`finetune compare` (runs/compare.py): the recipe, results and metric records of a run folder,
the recipe keys that differ from finetune's defaults, and metrics, values, durations and tables
in markdown.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from finetune.errors import FinetuneError
from finetune.runs.folders import RECIPE_FILE, RESULTS_FILE, read_metrics

# Recipe keys that name where a run went rather than what it did.
BOOKKEEPING = ("name", "output.dir", "output.root")
TASK_WORDS = {
    "classification": "text classification",
    "regression": "regression",
    "multi_label": "multi-label classification",
    "token_classification": "token classification",
}


def read_run(run_dir: Path) -> dict[str, Any]:
    """A run folder's recipe (as plain data), results and metric records; a clear error if it is not one."""
    run_dir = Path(run_dir)
    if not (run_dir / RECIPE_FILE).is_file():
        raise FinetuneError(
            f"{run_dir}: not a run folder (no {RECIPE_FILE}); give a folder `finetune train` wrote"
        )
    recipe = yaml.safe_load((run_dir / RECIPE_FILE).read_text(encoding="utf-8")) or {}
    results_path = run_dir / RESULTS_FILE
    results = json.loads(results_path.read_text(encoding="utf-8")) if results_path.is_file() else {}
    return {"dir": run_dir, "recipe": recipe, "results": results, "metrics": read_metrics(run_dir)}


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"optimizer": {"lr": 1e-4}}` -> `{"optimizer.lr": 1e-4}` (lists stay values)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def changed_keys(recipe: dict[str, Any]) -> dict[str, Any]:
    """The recipe keys whose value differs from finetune's defaults (bookkeeping keys left out)."""
    from finetune.recipe import Recipe

    defaults = flatten(Recipe().to_yaml_dict())
    return {
        key: value
        for key, value in flatten(recipe).items()
        if key not in BOOKKEEPING and (key not in defaults or defaults[key] != value)
    }


def show(value: Any) -> str:
    """A metric as a reader wants it: 4 decimals (3 significant digits when tiny or huge)."""
    if isinstance(value, float):
        return f"{value:.4f}" if value == 0 or 1e-3 <= abs(value) < 1e4 else f"{value:.3g}"
    return show_value(value)


def show_value(value: Any) -> str:
    """A recipe value as written in YAML: `0.0001`, `3`, `null`, `[0, 1]`."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(show_value(v) for v in value) + "]"
    return str(value)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{seconds:.1f} s"


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return lines + [
        "| " + " | ".join(show(cell) if not isinstance(cell, str) else cell for cell in row) + " |"
        for row in rows
    ]
