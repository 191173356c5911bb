"""`finetune compare RUN_DIR...`: what differs between runs, how they scored, and their curves.

Prints one table: a row per run, a column per recipe key whose value differs between the runs
(keys all runs share are left out), then the watched metric's best value and step, the final
metrics, steps and training time. Writes one figure overlaying every run's validation curve
of the watched metric (and the validation loss).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from finetune.errors import FinetuneError
from finetune.runs.folders import during_training
from finetune.runs.plots import _pyplot
from finetune.runs.reading import BOOKKEEPING, flatten, read_run, show, show_value


def resolved(recipe: dict[str, Any]) -> dict[str, Any]:
    """A run's recipe as flat keys; keys it predates (added to finetune since) take their defaults."""
    from finetune.recipe import Recipe

    return {**flatten(Recipe().to_yaml_dict()), **flatten(recipe)}


def differing_keys(recipes: list[dict[str, Any]]) -> list[str]:
    """Recipe keys (dotted) whose values are not the same in every run, in recipe order."""
    flat = [resolved(recipe) for recipe in recipes]
    keys = list(dict.fromkeys(key for f in flat for key in f))
    missing = object()
    return [
        key for key in keys if key not in BOOKKEEPING and len({repr(f.get(key, missing)) for f in flat}) > 1
    ]


def run_label(run: dict[str, Any]) -> str:
    return run["dir"].name


def comparison_rows(runs: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the comparison table."""
    keys = differing_keys([run["recipe"] for run in runs])
    metric_names = list(
        dict.fromkeys(m for run in runs for m in run["results"].get("final_metrics", {}) if m != "loss")
    )
    header = ["run", *keys, "watched", "best", "best step", *metric_names, "steps", "train time"]
    rows = []
    for run in runs:
        flat, results = resolved(run["recipe"]), run["results"]
        best = results.get("best", {})
        final = results.get("final_metrics", {})
        seconds = results.get("train_seconds")
        rows.append(
            [
                run_label(run),
                *(show_value(flat.get(key, "-")) for key in keys),
                results.get("metric", "-"),
                show(best.get("value", "-")),
                show_value(best.get("step", "-")),
                *(show(final.get(name, "-")) for name in metric_names),
                show_value(results.get("steps", "-")),
                f"{seconds:.0f} s" if isinstance(seconds, (int, float)) else "-",
            ]
        )
    return header, rows


def format_text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(len(header))]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(row) for row in rows)])


def _curve(records: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [(r["step"], r[key]) for r in during_training(records) if isinstance(r.get(key), (int, float))]
    return [p[0] for p in points], [p[1] for p in points]


def plot_comparison(runs: list[dict[str, Any]], path: Path) -> Path:
    """One figure: each run's watched validation metric (left) and validation loss (right) by step."""
    metrics = list(dict.fromkeys(run["results"].get("metric", "loss") for run in runs))
    watched = metrics[0] if len(metrics) == 1 else None
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    for run in runs:
        metric = run["results"].get("metric", "loss")
        steps, values = _curve(run["metrics"], f"eval_{metric}")
        label = run_label(run) + ("" if watched else f" ({metric})")
        (line,) = left.plot(steps, values, "o-", markersize=3, label=label)
        best = run["results"].get("best", {})
        if best.get("step") is not None:
            left.plot([best["step"]], [best["value"]], "*", markersize=12, color=line.get_color())
        loss_steps, losses = _curve(run["metrics"], "eval_loss")
        right.plot(loss_steps, losses, "o-", markersize=3, color=line.get_color(), label=run_label(run))
    left.set(
        xlabel="optimizer step",
        ylabel=watched or "watched metric",
        title=f"Validation {watched or 'metric'} (* best)",
    )
    right.set(xlabel="optimizer step", ylabel="loss", title="Validation loss")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    left.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def compare_runs(run_dirs: list[Path], figure: Path | None = Path("compare.png")) -> str:
    """The comparison table as text (also returned); writes the overlay figure to `figure`."""
    if len(run_dirs) < 2:
        raise FinetuneError("compare: give at least two run folders")
    runs = [read_run(Path(d)) for d in run_dirs]
    header, rows = comparison_rows(runs)
    text = format_text_table(header, rows)
    if figure is not None:
        plot_comparison(runs, Path(figure))
    return text
