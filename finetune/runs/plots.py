"""Plots of a run, drawn from its `metrics.jsonl`: learning rate, losses, validation metrics; and
from `results.json`, the reliability diagram of temperature scaling (finetune/calibration/).

The curves stop at the Trainer's end-of-training summary: the evaluation of the restored best
weights that follows it is the best step again, not a new point in time, so it is marked at the
best step instead of being drawn as a jump at the last one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from finetune.runs.folders import RESULTS_FILE, during_training

EVAL_PREFIX = "eval_"
TIMING = ("runtime", "samples_per_second", "steps_per_second", "preparation_time")  # not metrics


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _series(records: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
    return [p[0] for p in points], [p[1] for p in points]


def plot_learning_rate(records: list[dict[str, Any]], path: Path) -> Path | None:
    steps, lrs = _series(records, "learning_rate")
    if not steps:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(steps, lrs, color="tab:blue")
    ax.set(xlabel="optimizer step", ylabel="learning rate", title="Learning rate")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _mark_best(ax: Any, best_step: int | None) -> None:
    if best_step is not None:
        ax.axvline(
            best_step, color="grey", linestyle=":", linewidth=1.2, label=f"best (restored), step {best_step}"
        )


def plot_losses(records: list[dict[str, Any]], path: Path, best_step: int | None = None) -> Path | None:
    train_steps, train_loss = _series(records, "loss")
    eval_steps, eval_loss = _series(records, "eval_loss")
    if not train_steps and not eval_steps:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    if train_steps:
        ax.plot(train_steps, train_loss, label="training loss", color="tab:blue", alpha=0.8)
    if eval_steps:
        ax.plot(eval_steps, eval_loss, "o-", label="validation loss", color="tab:orange")
    _mark_best(ax, best_step)
    ax.set(xlabel="optimizer step", ylabel="loss", title="Loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_metrics(
    records: list[dict[str, Any]], path: Path, watched: str | None = None, best_step: int | None = None
) -> Path | None:
    names = sorted(
        {
            k[len(EVAL_PREFIX) :]
            for r in records
            for k in r
            if k.startswith(EVAL_PREFIX) and k != "eval_loss" and not k.endswith(TIMING)
        }
    )
    if not names:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for name in names:
        steps, values = _series(records, EVAL_PREFIX + name)
        style = {"linewidth": 2.5} if name == watched else {"linewidth": 1.2, "alpha": 0.8}
        ax.plot(steps, values, "o-", label=name + (" (watched)" if name == watched else ""), **style)
    _mark_best(ax, best_step)
    ax.set(xlabel="optimizer step", ylabel="value", title="Validation metrics")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_run(
    run_dir: Path, records: list[dict[str, Any]], watched: str | None = None, best_step: int | None = None
) -> list[Path]:
    """Write lr.png, loss.png and metrics.png into the run folder; returns the files written."""
    records = during_training(records)
    written = [
        plot_learning_rate(records, run_dir / "lr.png"),
        plot_losses(records, run_dir / "loss.png", best_step),
        plot_metrics(records, run_dir / "metrics.png", watched, best_step),
    ]
    return [p for p in written if p is not None]


CALIBRATION_PLOT = "calibration.png"


def _reliability_points(rows: list[dict[str, Any]]) -> tuple[list[float], list[float], list[float]]:
    """Bin centres, accuracies and bin widths of the non-empty bins."""
    kept = [r for r in rows if r.get("count")]
    return (
        [(r["lower"] + r["upper"]) / 2 for r in kept],
        [r["accuracy"] for r in kept],
        [r["upper"] - r["lower"] for r in kept],
    )


def plot_reliability(calibration: dict[str, Any] | None, path: Path) -> Path | None:
    """Reliability diagram: accuracy per confidence bin before and after temperature scaling, against
    the diagonal a calibrated model would follow; the ECE of each in the legend."""
    if not calibration or "reliability_before" not in calibration:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1.2, label="perfectly calibrated")
    for when, color, shift in (("before", "tab:red", -0.25), ("after", "tab:blue", 0.25)):
        centres, accuracy, widths = _reliability_points(calibration[f"reliability_{when}"])
        temperature = 1.0 if when == "before" else calibration["temperature"]
        label = f"{when} (T = {temperature:.2f}), ECE {calibration[f'ece_{when}']:.4f}"
        ax.bar(
            [c + shift * w / 2 for c, w in zip(centres, widths)],
            accuracy,
            width=[w / 2 for w in widths],
            color=color,
            alpha=0.7,
            label=label,
        )
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (bin)", ylabel="accuracy in bin")
    ax.set_title(f"Reliability on {calibration['examples']:,} validation examples")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_calibration(run_dir: Path) -> Path | None:
    """`calibration.png` in the run folder from results.json's `calibration` (None when it has none)."""
    import json

    results = Path(run_dir) / RESULTS_FILE
    if not results.is_file():
        return None
    calibration = json.loads(results.read_text(encoding="utf-8")).get("calibration")
    return plot_reliability(calibration, Path(run_dir) / CALIBRATION_PLOT)
