"""Cross-validation results: the mean and sample standard deviation, per seed and overall."""

import statistics

import pytest

from finetune.search.cv_report import CVRun, CVSummary, spread


def test_summary_reports_mean_and_sample_std_per_seed_and_overall(tmp_path):
    summary = CVSummary(metric="accuracy", folds=2, seeds=[1, 2])
    for seed, fold, value in [(1, 1, 0.8), (1, 2, 0.9), (2, 1, 0.7), (2, 2, 0.7)]:
        summary.runs.append(CVRun(seed, fold, value, 10, 8, 2, tmp_path / f"seed{seed}-fold{fold}"))
    stats = summary.to_dict()
    assert stats["overall"]["mean"] == pytest.approx(0.775)
    assert stats["overall"]["std"] == pytest.approx(statistics.stdev([0.8, 0.9, 0.7, 0.7]))
    assert stats["per_seed"]["1"] == pytest.approx(
        {"n": 2, "mean": 0.85, "std": statistics.stdev([0.8, 0.9]), "min": 0.8, "max": 0.9}
    )
    assert stats["per_seed"]["2"]["std"] == 0.0
    assert stats["std_of_seed_means"] == pytest.approx(statistics.stdev([0.85, 0.7]))
    assert spread([]) == {"n": 0, "mean": None, "std": None, "min": None, "max": None}
