"""Run plots: curves stop at the end-of-training summary; the restored best step is marked."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from finetune.runs.plots import plot_run  # noqa: E402

RECORDS = [
    {"step": 0, "eval_loss": 0.70, "eval_accuracy": 0.50},
    {"step": 10, "loss": 0.65, "learning_rate": 1e-4},
    {"step": 10, "eval_loss": 0.40, "eval_accuracy": 0.85},
    {"step": 20, "loss": 0.30, "learning_rate": 5e-5},
    {"step": 20, "eval_loss": 0.60, "eval_accuracy": 0.80},
    {"step": 20, "train_loss": 0.45, "train_runtime": 3.0},  # the Trainer's summary
    {"step": 20, "eval_loss": 0.40, "eval_accuracy": 0.85},  # the restored best weights, evaluated again
]


def _figures_by_title(monkeypatch, run_dir, **kwargs):
    """Draw the run's plots and return the files and each figure's axes, by title."""
    plt.close("all")
    with monkeypatch.context() as patch:
        patch.setattr(plt, "close", lambda fig=None: None)  # keep the figures to look at them
        written = plot_run(run_dir, RECORDS, **kwargs)
    figures = {plt.figure(n).axes[0].get_title(): plt.figure(n).axes[0] for n in plt.get_fignums()}
    return written, figures


def test_curves_stop_at_the_summary_and_mark_the_best_step(tmp_path, monkeypatch):
    written, axes = _figures_by_title(monkeypatch, tmp_path, watched="accuracy", best_step=10)
    assert sorted(p.name for p in written) == ["loss.png", "lr.png", "metrics.png"]
    assert all(p.stat().st_size > 0 for p in written)

    metric_lines = {line.get_label(): line for line in axes["Validation metrics"].get_lines()}
    accuracy = metric_lines["accuracy (watched)"]
    assert list(accuracy.get_xdata()) == [0, 10, 20]  # no second point at step 20
    assert list(accuracy.get_ydata()) == [0.50, 0.85, 0.80]
    best = metric_lines["best (restored), step 10"]
    assert list(best.get_xdata()) == [10, 10]

    loss_lines = {line.get_label(): line for line in axes["Loss"].get_lines()}
    assert list(loss_lines["validation loss"].get_xdata()) == [0, 10, 20]
    assert "best (restored), step 10" in loss_lines
    plt.close("all")


def test_without_a_best_step_nothing_is_marked(tmp_path, monkeypatch):
    _, axes = _figures_by_title(monkeypatch, tmp_path, watched="accuracy")
    labels = [line.get_label() for line in axes["Validation metrics"].get_lines()]
    assert labels == ["accuracy (watched)"]
    plt.close("all")


def test_reliability_diagram_draws_each_non_empty_bins_accuracy_before_and_after(monkeypatch, tmp_path):
    from finetune.runs.plots import plot_reliability

    def bins(accuracies):
        return [
            {"lower": i / 4, "upper": (i + 1) / 4, "count": 0 if a is None else 5, "accuracy": a}
            for i, a in enumerate(accuracies)
        ]

    calibration = {
        "temperature": 2.0,
        "examples": 20,
        "ece_before": 0.3,
        "ece_after": 0.05,
        "reliability_before": bins([None, None, 0.6, 0.7]),
        "reliability_after": bins([None, 0.55, 0.7, None]),
    }
    plt.close("all")
    with monkeypatch.context() as patch:
        patch.setattr(plt, "close", lambda fig=None: None)
        assert plot_reliability(calibration, tmp_path / "calibration.png").is_file()
        (ax,) = plt.gcf().axes
    heights = [[bar.get_height() for bar in container] for container in ax.containers]
    assert heights == [[0.6, 0.7], [0.55, 0.7]]
    labels = ax.get_legend_handles_labels()[1]
    assert "before (T = 1.00), ECE 0.3000" in labels and "after (T = 2.00), ECE 0.0500" in labels
    assert plot_reliability(None, tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()
