"""The results of a sweep folder: the trial table, the plots and best.yaml, from the Optuna study.

Written after every trial (by any worker), so a stopped or running sweep always shows where it
stands; files are replaced atomically, so workers sharing a folder never read half a file.

    results.csv, results.md   every trial, best first (completed by value, then pruned, then failed)
    sweep.png                 the metric against each swept key
    curves.png                each trial's validation metric at each evaluation
    best.yaml                 the best completed trial's recipe without its run folder
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from finetune.recipe.sweep import RangeSpec, SweepFile
from finetune.runs.folders import write_atomically
from finetune.search.sweep_folder import BASE_RECIPE_FILE

if TYPE_CHECKING:
    import optuna

    from finetune.search.sweep_folder import SweepRun

BEST_FILE = "best.yaml"


def label(value: Any) -> Any:
    """Optuna's categorical choices are scalars; lists and mappings are stored as their JSON text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True)


def decode(spec: SweepFile, params: dict[str, Any]) -> dict[str, Any]:
    """Recipe values of a trial's stored Optuna params."""
    values = {}
    for key, stored in params.items():
        dimension = spec.space.get(key)
        if isinstance(dimension, list):
            values[key] = {label(v): v for v in dimension}.get(stored, stored)
        else:
            values[key] = stored
    return values


def show(value: Any) -> str:
    """A value for a table or a message: floats to 3 significant digits, lists and mappings as JSON."""
    if isinstance(value, float):
        return f"{value:.3g}"
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def trial_rows(study: optuna.Study, spec: SweepFile, greater: bool) -> list[dict[str, Any]]:
    """One row per trial, best first: completed by value, then pruned, then failed and running."""
    from optuna.trial import TrialState

    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.WAITING:
            continue
        value = t.value if t.state == TrialState.COMPLETE else t.user_attrs.get("value")
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name.lower(),
                "value": value,
                **decode(spec, t.params),
                "steps": t.user_attrs.get("steps"),
                "run_dir": t.user_attrs.get("run_dir"),
                "error": t.user_attrs.get("error", ""),
                "curve": [t.intermediate_values[s] for s in sorted(t.intermediate_values)],
            }
        )
    order = {"complete": 0, "pruned": 1, "fail": 2, "running": 3}

    def rank(row: dict[str, Any]) -> tuple:
        value = row["value"]
        missing = value is None or not math.isfinite(value)
        return (order[row["state"]], missing, 0 if missing else (-value if greater else value), row["trial"])

    return sorted(rows, key=rank)


def write_report(study: optuna.Study, sweep: SweepRun, metric: str, greater: bool) -> dict[str, Any]:
    """results.csv/.md, sweep.png, curves.png and best.yaml from everything in the study."""
    rows = trial_rows(study, sweep.spec, greater)
    keys = list(sweep.spec.space)
    write_table(rows, keys, metric, sweep.folder)
    plot_sweep(rows, sweep.spec, metric, sweep.folder / "sweep.png")
    plot_curves(rows, metric, sweep.folder / "curves.png")
    best = next((r for r in rows if r["state"] == "complete" and r["value"] is not None), None)
    summary = {"metric": metric, "trials": len(rows), "best": best}
    if best is not None:
        write_best(sweep, best, metric)
    return summary


def write_table(rows: list[dict[str, Any]], keys: list[str], metric: str, folder: Path) -> None:
    columns = ["trial", "state", metric, *keys, "steps", "run_dir", "error"]
    records = [
        [
            r["trial"],
            r["state"],
            r["value"],
            *(_cell(r.get(k)) for k in keys),
            r["steps"],
            r["run_dir"],
            r["error"],
        ]
        for r in rows
    ]
    write_atomically(folder / "results.csv", _csv_text(columns, records))
    lines = ["| " + " | ".join(columns[:-1]) + " |", "|" + " --- |" * (len(columns) - 1)]
    for record in records:
        cells = [show(c) if isinstance(c, float) else ("" if c is None else str(c)) for c in record[:-1]]
        if isinstance(record[2], float):
            cells[2] = f"{record[2]:.4f}"  # the metric: four decimals, as the other commands print it
        lines.append("| " + " | ".join(cells) + " |")
    write_atomically(folder / "results.md", "\n".join(lines) + "\n")


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def _csv_text(columns: list[str], records: list[list[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    writer.writerows(["" if c is None else c for c in record] for record in records)
    return buffer.getvalue()


def write_best(sweep: SweepRun, best: dict[str, Any], metric: str) -> Path:
    """The best trial's resolved recipe without its run folder: `finetune train best.yaml` reruns it."""
    from finetune.recipe import load_recipe

    recipe = load_recipe(sweep.folder / best["run_dir"] / BASE_RECIPE_FILE)
    data = recipe.to_yaml_dict()
    data["output"]["dir"] = None
    shown = ", ".join(f"{k}={show(best[k])}" for k in sweep.spec.space)
    header = (
        f"# Best trial of the sweep in {sweep.folder}: trial {best['trial']}, {metric} {best['value']:.4f}\n"
        f"# ({shown}). Train it with: finetune train {sweep.folder / BEST_FILE}\n"
    )
    path = sweep.folder / BEST_FILE
    write_atomically(path, header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


def plot_sweep(rows: list[dict[str, Any]], spec: SweepFile, metric: str, path: Path) -> Path | None:
    """The metric against each swept key: completed trials, pruned ones (their best so far), the best."""
    from finetune.runs.plots import _pyplot

    scored = [r for r in rows if r["value"] is not None and r["state"] in ("complete", "pruned")]
    if not scored:
        return None
    plt = _pyplot()
    keys = list(spec.space)
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.6), squeeze=False, sharey=True)
    best = scored[0] if scored[0]["state"] == "complete" else None
    for ax, key in zip(axes[0], keys):
        _scatter_key(ax, scored, key, spec.space[key], best)
        ax.set_xlabel(key)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"best validation {metric}")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(f"Sweep: {spec.name or ''} ({len(scored)} trials)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _scatter_key(ax: Any, rows: list[dict[str, Any]], key: str, dimension: Any, best: Any) -> None:
    values = [r[key] for r in rows]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if numeric:
        x = values
        positive = all(v > 0 for v in values)
        wide = positive and max(values) / min(values) >= 50
        if (isinstance(dimension, RangeSpec) and dimension.kind == "log_uniform") or wide:
            ax.set_xscale("log")
    else:
        names = [show(v) for v in (dimension if isinstance(dimension, list) else values)]
        index = {name: i for i, name in enumerate(dict.fromkeys(names))}
        x = [index[show(v)] for v in values]
        ax.set_xticks(list(index.values()), list(index), rotation=20, fontsize=8)
        ax.set_xlim(-0.5, len(index) - 0.5)
    styles = {"complete": ("o", "tab:blue", "completed"), "pruned": ("x", "tab:gray", "pruned")}
    for state, (marker, color, name) in styles.items():
        points = [(xi, r["value"]) for xi, r in zip(x, rows) if r["state"] == state]
        if points:
            ax.scatter(*zip(*points), marker=marker, color=color, label=name, zorder=2)
    if best is not None:
        bx = x[rows.index(best)]
        ax.scatter([bx], [best["value"]], marker="*", s=220, color="tab:red", label="best", zorder=3)


def plot_curves(rows: list[dict[str, Any]], metric: str, path: Path) -> Path | None:
    """Each trial's validation metric at each evaluation (pruned trials end early, dashed)."""
    from finetune.runs.plots import _pyplot

    curves = [r for r in rows if r["curve"]]
    if not curves:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in curves:
        style = "--" if r["state"] == "pruned" else "-"
        ax.plot(range(1, len(r["curve"]) + 1), r["curve"], style, marker="o", label=f"trial {r['trial']}")
    ax.set(xlabel="evaluation", ylabel=f"validation {metric}", title="Trials (dashed: pruned)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    if len(curves) <= 12:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def describe(summary: dict[str, Any], folder: Path) -> list[str]:
    """The end of a sweep, in a few lines."""
    best = summary["best"]
    if best is None:
        return [f"no trial completed; see {folder / 'results.md'}"]
    return [
        f"best: trial {best['trial']}, {summary['metric']} {best['value']:.4f} "
        f"({summary['trials']} trials; table {folder / 'results.md'})",
        f"winning recipe: {folder / BEST_FILE}  (finetune train {folder / BEST_FILE})",
    ]
