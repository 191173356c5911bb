"""`finetune cv`: K-fold cross-validation on the training data, repeated over seeds.

Small data sets (MRPC, RTE) give results that move by points from one seed to the next
(Dodge et al., 2020, "Fine-Tuning Pretrained Language Models: Weight Initializations, Data Orders,
and Early Stopping"; Mosbach et al., 2021): one run says little. `finetune cv` trains one ordinary
run per fold and seed and reports the mean and standard deviation of the held-out metric.

- **Folds.** The recipe's training data (after `max_train_samples`) is split into K folds,
  stratified by label for classification (scikit-learn's `StratifiedKFold`), shuffled K-fold for
  regression; each fold is held out once while the run trains on the others. The fold files are
  written as JSON Lines into the cv folder and each run's recipe points at them, so every run folder
  reproduces with `finetune train <run>/recipe.yaml output.dir=...`. The recipe's own validation set
  is not used (when it is a held-out share of train, that share stays out).
- **Selection never sees the held-out fold.** Early stopping and the choice of the best weights
  are model selection: done on the held-out fold, the best of many evaluations on it is an
  optimistic score. Each run's recipe therefore names only its training folds, and the run
  validates on a seeded, stratified `data.validation_fraction` of them (the split every recipe
  without a validation file gets: `split_validation` in data/files.py). After training, the run's final
  weights (the restored best ones) are scored once on the held-out fold; that is the reported value.
- **Seeds.** Each seed reshuffles the folds and re-seeds training (head initialisation, data order,
  dropout). `--folds 1` skips the folds: the recipe's own train/validation split, once per seed,
  reporting the best validation value as `finetune train` does (selected on the same set).

    <cv>/
      data/seed42/fold1/{train,heldout}.jsonl
      seed42-fold1/ ...          one ordinary run folder per seed and fold (results.json: `heldout`)
      results.csv, results.md    every run
      summary.json               mean and std per seed and overall
      cv.png                     the metric of every run, per seed, with mean +- std
"""

from __future__ import annotations

import csv
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finetune.errors import FinetuneError
from finetune.recipe import Recipe, validate_recipe

if TYPE_CHECKING:
    from datasets import Dataset

    from finetune.data.splits import TaskData
    from finetune.training.run import RunResult

CV_TASKS = ("classification", "regression")
HELDOUT_PREFIX = "heldout_"


@dataclass
class CVRun:
    seed: int
    fold: int  # 1-based; 0 when there are no folds (--folds 1)
    value: float | None  # the held-out fold's score (--folds 1: the best validation value)
    steps: int | None
    train_size: int  # rows trained on
    heldout_size: int  # rows `value` was scored on
    run_dir: Path
    inner_value: float | None = None  # the best value on the inner validation split (folds only)
    inner_size: int | None = None  # rows of the inner validation split


@dataclass
class CVSummary:
    metric: str
    folds: int
    seeds: list[int]
    runs: list[CVRun] = field(default_factory=list)

    def values(self, seed: int | None = None) -> list[float]:
        return [r.value for r in self.runs if r.value is not None and (seed is None or r.seed == seed)]

    def scored_on(self) -> str:
        if self.folds > 1:
            return "held-out fold, once, with the weights selected on an inner validation split"
        return "the recipe's validation set: best value, selected on the same set"

    def to_dict(self) -> dict[str, Any]:
        per_seed = {str(s): spread(self.values(s)) for s in self.seeds}
        seed_means = [per_seed[str(s)]["mean"] for s in self.seeds if per_seed[str(s)]["n"]]
        inner = [r.inner_value for r in self.runs if r.inner_value is not None]
        return {
            "metric": self.metric,
            "folds": self.folds,
            "seeds": self.seeds,
            "scored_on": self.scored_on(),
            "overall": spread(self.values()),
            "per_seed": per_seed,
            "std_of_seed_means": statistics.stdev(seed_means) if len(seed_means) > 1 else None,
            "inner_validation": spread(inner) if self.folds > 1 else None,  # selection, not the result
        }


def spread(values: list[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (n - 1), min, max and count."""
    if not values:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    return {
        "n": len(values),
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


# ---------------------------------------------------------------------------------------------
# Folds


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
    labels = data.train["labels"]
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
    texts = {c: subset[c] for c in columns}
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


# ---------------------------------------------------------------------------------------------
# Running


def create_cv_dir(output: Path | None, recipe: Recipe) -> Path:
    from finetune.runs.folders import default_run_dir

    folder = output or default_run_dir(recipe.model_copy(update={"name": f"cv-{recipe.name or 'recipe'}"}))
    if folder.exists():
        raise FinetuneError(f"cv: --output {folder} already exists; finetune never overwrites it")
    folder.mkdir(parents=True)
    return folder


def plan_runs(recipe: Recipe, folds: int, seeds: list[int]) -> list[dict[str, Any]]:
    """Seed, fold and row indices of every run; all checks (task, seeds, data, folds) happen here."""
    from finetune.data.loading import load_task_data

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


def heldout_metrics(result: RunResult, recipe: Recipe, path: Path) -> dict[str, float]:
    """The run's final weights (the restored best ones) scored once on the held-out fold.

    The file is read and its labels encoded as the run read its training data (data/files.py), with the
    run's label names; `Trainer.predict` scores it with the run's own metric function. Unlike
    `evaluate`, it reports to no callback: early stopping never sees these metrics.
    """
    from finetune.data.columns import canonical_columns
    from finetune.data.files import read_file
    from finetune.data.labels import encode_labels, float_targets
    from finetune.data.loading import tokenize

    spec, trainer = recipe.data, result.trainer
    dataset = canonical_columns(read_file(spec, path, "heldout"), spec, str(path))
    names = result.results["labels"]
    if names is None:
        dataset = float_targets(dataset, "heldout", str(path))
    else:
        dataset = encode_labels(dataset, names, "heldout", str(path))
    output = trainer.predict(
        tokenize(dataset, trainer.processing_class, spec.max_length), metric_key_prefix="heldout"
    )
    noise = ("runtime", "per_second", "preparation_time")
    return {k.removeprefix(HELDOUT_PREFIX): v for k, v in output.metrics.items() if not k.endswith(noise)}


def cross_validate(
    recipe: Recipe, folds: int = 5, seeds: list[int] | None = None, output: Path | None = None
) -> tuple[CVSummary, Path]:
    """Train one run per seed and fold; write the table, summary and plot; return the summary."""
    from finetune.distributed.processes import say
    from finetune.runs.folders import write_results
    from finetune.training.callbacks import format_metrics
    from finetune.training.run import train

    seeds = seeds if seeds is not None else [recipe.training.seed]
    plans = plan_runs(recipe, folds, seeds)  # every check first: a refused cv leaves no folder
    folder = create_cv_dir(output, recipe)
    metric = recipe.early_stopping.watched_metric(recipe.model.task)
    summary = CVSummary(metric=metric, folds=folds, seeds=seeds)
    for number, plan in enumerate(plans, start=1):
        seed, fold = plan["seed"], plan["fold"]
        where = f"seed {seed}" + (f", fold {fold} of {folds}" if fold else "")
        say(f"\n=== cv run {number} of {len(plans)}: {where}")
        run, heldout = run_recipe(recipe, plan, folder)
        result = train(run, source=f"{where} of cv {folder}")
        results, data = result.results, result.results.get("data", {})
        done = CVRun(
            seed=seed,
            fold=fold,
            value=results["best"]["value"],  # --folds 1: the recipe's validation set, as `train` reports it
            steps=results.get("steps"),
            train_size=data.get("train", 0),
            heldout_size=data.get("validation", 0),
            run_dir=result.run_dir,
        )
        if heldout is not None:  # with folds, that best value is the inner split's: selection, not the result
            scores = heldout_metrics(result, run, heldout)
            examples = len(plan["validation"])
            results["heldout"] = {"file": str(heldout), "examples": examples, "metrics": scores}
            write_results(result.run_dir, results)
            say(f"held-out fold ({examples} examples): {format_metrics(scores, prefix='')}")
            done.inner_value, done.inner_size = done.value, done.heldout_size
            done.value, done.heldout_size = scores.get(metric), examples
        summary.runs.append(done)
        result.trainer = None  # a finished run's model, optimizer and best weights: not kept through the next
        write_report(summary, folder)  # after every run: a stopped cv still shows what it has
    return summary, folder


# ---------------------------------------------------------------------------------------------
# Results


def write_report(summary: CVSummary, folder: Path) -> None:
    metric = summary.metric
    columns = ["seed", "fold", metric, "steps", "train", "heldout", f"inner_{metric}", "inner", "run_dir"]
    rows = [
        [r.seed, r.fold, r.value, r.steps, r.train_size, r.heldout_size, r.inner_value, r.inner_size]
        + [r.run_dir.name]
        for r in summary.runs
    ]
    with (folder / "results.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    lines += ["", *describe(summary)]
    (folder / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8")
    plot_cv(summary, folder / "cv.png")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def describe(summary: CVSummary) -> list[str]:
    """`accuracy 0.8733 +- 0.0211 over 15 runs (5 folds x 3 seeds)` and one line per seed."""
    stats = summary.to_dict()
    overall = stats["overall"]
    if not overall["n"]:
        return [f"no run reported {summary.metric}"]
    seeds = f"{len(summary.seeds)} seed{'s' if len(summary.seeds) > 1 else ''}"
    shape = f"{summary.folds} folds x {seeds}" if summary.folds > 1 else seeds
    lines = [
        f"{summary.metric}: {overall['mean']:.4f} +- {overall['std']:.4f} (mean +- sample std over "
        f"{overall['n']} runs, {shape}; min {overall['min']:.4f}, max {overall['max']:.4f})",
        f"  scored on: {summary.scored_on()}",
    ]
    inner = stats["inner_validation"]
    if inner and inner["n"]:  # what selection saw: optimistic, shown to compare, not the result
        lines.append(f"  best on the inner validation splits: {inner['mean']:.4f} +- {inner['std']:.4f}")
    if summary.folds > 1 and len(summary.seeds) > 1:
        for seed in summary.seeds:
            one = stats["per_seed"][str(seed)]
            if one["n"]:
                lines.append(f"  seed {seed}: {one['mean']:.4f} +- {one['std']:.4f} over {one['n']} folds")
        if stats["std_of_seed_means"] is not None:
            lines.append(f"  std of the seed means: {stats['std_of_seed_means']:.4f}")
    return lines


def plot_cv(summary: CVSummary, path: Path) -> Path | None:
    """Every run's metric, one column per seed, with each seed's mean +- std and the overall band."""
    from finetune.runs.plots import _pyplot

    if not summary.values():
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5.5, 1.3 * len(summary.seeds) + 3), 4))
    for x, seed in enumerate(summary.seeds):
        runs = [r for r in summary.runs if r.seed == seed and r.value is not None]
        offsets = [(i - (len(runs) - 1) / 2) * 0.08 for i in range(len(runs))]
        ax.scatter([x + o for o in offsets], [r.value for r in runs], color="tab:blue", alpha=0.7, zorder=2)
        one = spread([r.value for r in runs])
        if one["n"]:
            ax.errorbar(x + 0.3, one["mean"], yerr=one["std"], fmt="s", color="black", capsize=4, zorder=3)
    overall = spread(summary.values())
    ax.axhline(overall["mean"], color="tab:red", linewidth=1.5, label=f"mean {overall['mean']:.4f}")
    ax.axhspan(
        overall["mean"] - overall["std"],
        overall["mean"] + overall["std"],
        color="tab:red",
        alpha=0.1,
        label=f"+- std {overall['std']:.4f}",
    )
    ax.set_xticks(range(len(summary.seeds)), [f"seed {s}" for s in summary.seeds])
    ax.set_xlim(-0.6, len(summary.seeds) - 0.2)
    what = f"{summary.folds}-fold CV" if summary.folds > 1 else "runs"
    scored = f"held-out {summary.metric}" if summary.folds > 1 else f"best validation {summary.metric}"
    ax.set(ylabel=scored, title=f"{what}: dots = runs, squares = mean +- std")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
