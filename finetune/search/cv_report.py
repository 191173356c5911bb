"""The results of a cross-validation: each run's score, their mean and spread, the table and the plot.

Written after every run, so a stopped cv still shows what it has:

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
from typing import Any


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
