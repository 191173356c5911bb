"""The folds of a cross-validation, as files: which rows each run trains on and which it holds out.

Every check of a cv (task, seeds, data, folds) happens when its runs are planned, before anything
is written. A planned run with folds gets its training folds and its held-out fold written as JSON
Lines (`<cv>/data/seed42/fold1/{train,heldout}.jsonl`) and a recipe of its own that points at the
training folds, so that every run folder reproduces with `finetune train <run>/recipe.yaml`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finetune.data.columns import column_values
from finetune.errors import FinetuneError
from finetune.recipe import Recipe, validate_recipe

if TYPE_CHECKING:
    from datasets import Dataset

    from finetune.data.splits import TaskData

CV_TASKS = ("classification", "regression")


def fold_indices(
    labels: list[Any], folds: int, seed: int, stratify: bool
) -> list[tuple[list[int], list[int]]]:
    """(train, validation) row indices of each fold: a partition of the rows, stratified by label."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if folds < 2:
        raise FinetuneError(
            f"cv: --folds must be at least 2 to make folds (got {folds}); --folds 1 means none"
        )
    if folds > len(labels):
        raise FinetuneError(f"cv: --folds {folds} is more than the {len(labels)} training examples")
    if stratify:
        counts = {label: labels.count(label) for label in set(labels)}
        small = {label: n for label, n in counts.items() if n < folds}
        if small:
            raise FinetuneError(
                f"cv: stratified {folds}-fold needs at least {folds} training examples of every class; "
                f"these have fewer: {small}. Use --folds {min(counts.values())} or fewer."
            )
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    else:
        splitter = KFold(n_splits=folds, shuffle=True, random_state=seed)
    rows = list(range(len(labels)))
    return [(train.tolist(), held.tolist()) for train, held in splitter.split(rows, labels)]


def label_values(data: TaskData) -> list[Any]:
    """The training labels as written to fold files: class names (numbers stay numbers), or floats."""
    labels = column_values(data.train, "labels")
    if data.label_names is None:
        return [float(v) for v in labels]
    names = [_as_written(name) for name in data.label_names]
    return [names[i] for i in labels]


def _as_written(name: str) -> Any:
    """A class name as it was in the data: "1" -> 1, "0.5" -> 0.5, "pos" -> "pos" (keeps the label order)."""
    for kind in (int, float):
        try:
            return kind(name)
        except ValueError:
            continue
    return name


def write_jsonl(dataset: Dataset, labels: list[Any], rows: list[int], path: Path) -> Path:
    """Rows of a (canonical-column) dataset as JSON Lines: text, text_pair, label."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = [c for c in ("text", "text_pair") if c in dataset.column_names]
    subset = dataset.select(rows)
    texts = {c: column_values(subset, c) for c in columns}
    with path.open("w", encoding="utf-8") as handle:
        for i, row in enumerate(rows):
            record = {c: texts[c][i] for c in columns}
            record["label"] = labels[row]
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def fold_recipe(recipe: Recipe, seed: int, run_dir: Path, train_file: Path | None) -> Recipe:
    """The recipe of one run: its seed, its run folder and, with folds, its training folds' file.

    No validation file: the run validates (early stopping, best weights) on the seeded, stratified
    `data.validation_fraction` of its training folds that load_task_data holds out, never on the
    held-out fold, which only `heldout_metrics` sees, once, after training.
    """
    data = recipe.to_yaml_dict()
    data["training"]["seed"] = seed
    data["output"]["dir"] = str(run_dir)
    if train_file is not None:
        data["data"].update(
            dir=None,
            train=str(train_file.resolve()),
            validation=None,
            format="jsonl",
            hub=None,
            header=True,
            text="text",
            text_pair="text_pair" if recipe.data.text_pair is not None else None,
            label="label",
            max_train_samples=None,
            max_eval_samples=None,
        )
    return validate_recipe(data, source=f"cv run {run_dir.name}")


def plan_runs(recipe: Recipe, folds: int, seeds: list[int]) -> list[dict[str, Any]]:
    """Seed, fold and row indices of every run; all checks (task, seeds, data, folds) happen here."""
    from finetune.data.task_data import load_task_data

    if recipe.model.task not in CV_TASKS:
        raise FinetuneError(
            f"cv: works for {' and '.join(CV_TASKS)} recipes; this one is {recipe.model.task}"
        )
    if not seeds or len(set(seeds)) != len(seeds):
        raise FinetuneError(f"cv: give one or more distinct seeds (got {seeds})")
    if folds == 1:
        return [{"seed": seed, "fold": 0} for seed in seeds]
    data = load_task_data(recipe.data, recipe.model.task, recipe.training.seed)
    labels = label_values(data)
    plans = []
    for seed in seeds:
        splits = fold_indices(labels, folds, seed, stratify=data.label_names is not None)
        for fold, (train_rows, held_rows) in enumerate(splits, start=1):
            plans.append({"seed": seed, "fold": fold, "train": train_rows, "validation": held_rows})
    for plan in plans:
        plan.update(data=data.train, labels=labels)
    return plans


def run_recipe(recipe: Recipe, plan: dict[str, Any], folder: Path) -> tuple[Recipe, Path | None]:
    """The recipe of one planned run and its held-out fold's file; with folds, both files are written first."""
    seed, fold = plan["seed"], plan["fold"]
    if not fold:
        return fold_recipe(recipe, seed, folder / f"seed{seed}", None), None
    where = folder / "data" / f"seed{seed}" / f"fold{fold}"
    train_file = write_jsonl(plan["data"], plan["labels"], plan["train"], where / "train.jsonl")
    heldout = write_jsonl(plan["data"], plan["labels"], plan["validation"], where / "heldout.jsonl")
    return fold_recipe(recipe, seed, folder / f"seed{seed}-fold{fold}", train_file), heldout
