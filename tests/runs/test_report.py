"""What a run leaves for people: report.md (finetune/runs/report.py) and TensorBoard logs."""

import json
import shutil

import pytest

from finetune.errors import FinetuneError
from finetune.runs.report import write_report
from finetune.training.arguments import trackers


def test_report_tells_the_story_of_the_run(run_dir):
    text = (run_dir / "report.md").read_text()
    results = json.loads((run_dir / "results.json").read_text())
    assert text.startswith("# Run `tiny-report`")
    for heading in (
        "## Results",
        "### Every evaluation",
        "## Curves",
        "## What trained",
        "## Recipe",
        "## Data",
        "## Time and memory",
        "## Reproduce and use",
    ):
        assert heading in text, heading
    best = results["best"]
    assert f"The best validation accuracy was **{best['value']:.4f}** at step {best['step']}" in text
    assert f"| {best['step']} | " in text and "← best" in text
    for image in ("lr.png", "loss.png", "metrics.png"):
        assert f"]({image})" in text and (run_dir / image).is_file()
    assert "- Frozen: embeddings, layer.0." in text
    assert f"{results['trainable_parameters']:,} of {results['total_parameters']:,}" in text
    assert "| `optimizer.lr` | `0.001` |" in text and "| `training.epochs` | `2` |" in text
    assert "output.dir" not in text.split("## Recipe")[1].split("## Data")[0]  # bookkeeping, not a choice
    assert "peak memory (process RSS)" in text and "training time" in text


def test_report_of_a_stopped_run_claims_no_evaluation_it_did_not_make(run_dir, tmp_path):
    from finetune.runs.model_card import write_model_card

    stopped = tmp_path / "stopped"
    shutil.copytree(run_dir, stopped)
    results = json.loads((stopped / "results.json").read_text())
    reason = "validation loss 0.6931 at step 6 is above guards.divergence.threshold 0.01"
    results.update(status="diverged", stop_reason=reason, final_metrics={})  # as pipeline.stop_run writes
    (stopped / "results.json").write_text(json.dumps(results))
    text = write_report(stopped).read_text()
    assert "evaluated again" not in text and "after (best weights)" not in text
    assert f"and ended early: {reason}." in text
    assert "those weights were restored and saved in `model/`." in text
    card = write_model_card(stopped).read_text()
    assert "with the saved (best) weights" not in card
    assert f"Not evaluated after training: the run ended early ({reason})." in card


def test_tensorboard_receives_training_and_evaluation_logs(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = run_dir / "tensorboard"
    assert any(logs.glob("events.out.tfevents.*"))
    scalars = set()
    for events in logs.glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        scalars |= set(accumulator.Tags()["scalars"])
    assert {"train/loss", "train/learning_rate", "eval/accuracy", "eval/loss"} <= scalars


def test_missing_tracker_package_is_a_clear_error():
    assert trackers([]) == "none"
    assert trackers(["tensorboard"]) == ["tensorboard"]
    pytest.importorskip("transformers.integrations")
    from transformers.integrations import is_wandb_available

    if not is_wandb_available():
        with pytest.raises(FinetuneError, match="output.report_to: 'wandb' needs its package"):
            trackers(["wandb"])


def test_report_shows_calibration_before_and_after_or_why_it_was_skipped(run_dir, tmp_path):
    import numpy as np

    from finetune.calibration.temperature import calibration_summary
    from finetune.runs.plots import plot_calibration
    from finetune.runs.reading import show

    # the fixture's run never beat its start: it hands those weights back uncalibrated, and says so
    assert "Temperature scaling skipped: the run hands back the weights it started from" in (
        (run_dir / "report.md").read_text()
    )
    calibrated = tmp_path / "calibrated"
    shutil.copytree(run_dir, calibrated)
    results = json.loads((calibrated / "results.json").read_text())
    logits = np.array([[4.0, 0.0], [3.0, 0.0], [0.0, 5.0], [0.0, 2.0]])
    summary = calibration_summary(logits, np.array([0, 1, 1, 1]), 2.0, bins=15)
    results["calibration"] = summary
    (calibrated / "results.json").write_text(json.dumps(results))
    assert plot_calibration(calibrated) == calibrated / "calibration.png"
    text = write_report(calibrated).read_text()
    assert f"| ECE (15 bins) | {show(summary['ece_before'])} | {show(summary['ece_after'])} |" in text
    assert "| temperature | 1 | 2.0000 |" in text and "on the 4 validation examples" in text
    assert "![Reliability diagram](calibration.png)" in text
