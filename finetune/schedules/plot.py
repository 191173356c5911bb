"""`finetune plot-schedule`: the learning rate of a recipe over its whole run, without training.

The run length comes from `--steps`, `training.max_steps`, or the number of rows in the training
file (counted, not loaded: lines of a CSV/TSV/JSONL file, the metadata of a Parquet file), turned
into optimizer steps exactly as the Trainer does for one process. With layer-wise learning rates
(`layer_lr:`) each block has its own peak, read from the model's config alone (a weightless
skeleton on torch's meta device): one curve per distinct peak.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from finetune.errors import FinetuneError
from finetune.recipe import Recipe
from finetune.schedules.formulas import lr_curve, warmup_steps


@dataclass
class RunLength:
    total: int  # optimizer steps
    steps_per_epoch: float | None
    source: str  # how the numbers were found, for the printout


def count_rows(recipe: Recipe) -> int | None:
    """Training rows, if the file can be counted without loading it (else None)."""
    from finetune.data.files import file_format, resolve_path
    from finetune.errors import DataError

    spec = recipe.data
    if spec.hub is not None or spec.train is None:
        return None
    try:
        path = resolve_path(spec, spec.train, "train")
    except DataError:  # not here: the caller asks for --steps
        return None
    fmt = file_format(spec, path)
    if fmt in ("csv", "tsv", "jsonl"):
        with path.open("rb") as handle:
            lines = sum(1 for line in handle if line.strip())
        return lines - (1 if fmt != "jsonl" and spec.header else 0)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    return None


def training_rows(recipe: Recipe, rows: int) -> int:
    """Rows left for training after the held-out validation share and `max_train_samples`."""
    spec = recipe.data
    if spec.validation is None and spec.hub is None:
        rows -= math.ceil(rows * spec.validation_fraction)  # datasets' train_test_split rounds test up
    if spec.max_train_samples is not None:
        rows = min(rows, spec.max_train_samples)
    return rows


def planned_examples(recipe: Recipe) -> int | None:
    """Training examples of one process, if the training file can be counted without loading it."""
    rows = count_rows(recipe)
    return None if rows is None else training_rows(recipe, rows)


def run_length(recipe: Recipe, steps: int | None = None, steps_per_epoch: float | None = None) -> RunLength:
    """Optimizer steps of the run and per epoch, from the arguments, the recipe, or the data size."""
    training = recipe.training
    if steps is not None:
        if steps_per_epoch is None and training.max_steps is None:
            steps_per_epoch = steps / training.epochs
        return RunLength(steps, steps_per_epoch, "--steps")
    if steps_per_epoch is None:
        rows = count_rows(recipe)
        if rows is not None:
            per_device, accumulation = training.batch_plan(1)
            batches = math.ceil(training_rows(recipe, rows) / per_device)
            steps_per_epoch = max(batches // accumulation + int(batches % accumulation > 0), 1)
            source = f"{training_rows(recipe, rows):,} training rows, one process"
    else:
        source = "--steps-per-epoch"
    if training.max_steps is not None:
        return RunLength(training.max_steps, steps_per_epoch, "training.max_steps")
    if steps_per_epoch is None:
        raise FinetuneError(
            "plot-schedule: the run length depends on the training data, which cannot be counted without "
            "loading it here; give --steps N (total optimizer steps) or set training.max_steps"
        )
    return RunLength(math.ceil(training.epochs * steps_per_epoch), steps_per_epoch, source)


def group_peaks(recipe: Recipe) -> dict[str, float]:
    """Peak LR per label: one entry without `layer_lr:`, else the blocks that share each peak."""
    base = recipe.optimizer.lr
    if not recipe.layer_lr.is_active():
        return {"all parameters": base}
    import torch
    from transformers import AutoModelForSequenceClassification

    from finetune.model.anatomy import model_anatomy
    from finetune.model.loading import load_config
    from finetune.optimizer.param_groups import block_learning_rates

    config = load_config(recipe.model, num_labels=2, label_names=None)  # the head's size does not matter
    with torch.device("meta"):  # structure only: no weights are read or allocated
        skeleton = AutoModelForSequenceClassification.from_config(config)
    by_lr: dict[float, list[str]] = {}
    for block, lr in block_learning_rates(model_anatomy(skeleton), base, recipe.layer_lr).items():
        by_lr.setdefault(lr, []).append(block)
    return {", ".join(blocks): lr for lr, blocks in sorted(by_lr.items(), reverse=True)}


def key_steps(recipe: Recipe, total: int) -> dict[str, int]:
    """The steps whose LR is printed: end of warmup, middle, last step."""
    return {
        "warmup end": min(warmup_steps(recipe.schedule, total), total - 1),
        "middle": total // 2,
        "end": total - 1,
    }


def plot_schedule(recipe: Recipe, curves: dict[str, list[float]], length: RunLength, path: Path) -> Path:
    """Write a PNG of the LR per optimizer step, one line per group peak, epochs marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for label, lrs in curves.items():
        ax.plot(range(len(lrs)), lrs, label=label if len(curves) > 1 else None, linewidth=1.5)
    spe = length.steps_per_epoch
    if spe and length.total / spe <= 30:
        for epoch in range(1, math.ceil(length.total / spe)):
            ax.axvline(epoch * spe, color="grey", alpha=0.25, linewidth=0.8)
    warm = warmup_steps(recipe.schedule, length.total)
    if warm:
        ax.axvline(warm, color="tab:red", linestyle="--", alpha=0.5, label="warmup end")
    title = f"{recipe.name or 'recipe'}: {recipe.schedule.name} schedule, {length.total:,} optimizer steps"
    if recipe.schedule.name == "plateau":
        title += "\n(cuts by gamma when the validation metric stalls: not known before the run)"
    ax.set(xlabel="optimizer step (grey lines: epochs)" if spe else "optimizer step", ylabel="learning rate")
    ax.set_title(title, fontsize=10)
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax.grid(alpha=0.3)
    if len(curves) > 1 or warm:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def schedule_curves(recipe: Recipe, length: RunLength) -> dict[str, list[float]]:
    """LR per step for each group peak (the schedule scales every group by the same factor)."""
    curves = {}
    for label, peak in group_peaks(recipe).items():
        # min_lr is absolute for groups at optimizer.lr; other groups keep the same proportions
        base = lr_curve(recipe.schedule, length.total, recipe.optimizer.lr, length.steps_per_epoch)
        curves[label] = [lr * peak / recipe.optimizer.lr for lr in base]
    return curves


def describe(recipe: Recipe, curves: dict[str, list[float]], length: RunLength) -> list[str]:
    """The printout: run length, then the LR of each group at warmup end, middle and end."""
    steps = key_steps(recipe, length.total)
    epochs = f", {length.steps_per_epoch:g} per epoch" if length.steps_per_epoch else ""
    lines = [f"{recipe.schedule.name} schedule: {length.total:,} optimizer steps{epochs} ({length.source})"]
    header = "  ".join(f"{name} (step {step})" for name, step in steps.items())
    lines.append(f"{'group':<28}  {header}")
    for label, lrs in curves.items():
        values = "  ".join(
            f"{lrs[step]:<{len(name) + len(str(step)) + 8}.3e}" for name, step in steps.items()
        )
        lines.append(f"{label[:28]:<28}  {values}")
    return lines
