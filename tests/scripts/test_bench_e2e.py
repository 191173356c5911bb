"""The whole-process benchmark: its command lines, its per-round ratios, and the whole harness end to
end on a 2-layer random BERT (scripts/bench_e2e.py --quick --tiny-model)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import GLUE, REPO, needs_glue


def bench():
    spec = importlib.util.spec_from_file_location("bench_e2e", REPO / "scripts" / "bench_e2e.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_like_for_like_finetune_makes_the_scripts_evaluations_and_saves_the_model():
    module = bench()
    plan = {"data": {"small": "/data/small"}, "model": "/models/minilm", "epochs": {"small": 1}}
    argv = module.finetune_argv("finetune", "small", plan, Path("/work/x"))
    assert argv[1:5] == ["-m", "finetune.cli", "train", "base"]
    overrides = argv[5:]
    assert "evaluation.before_training=false" in overrides
    assert "optimizer.lr=5e-05" in overrides and "training.epochs=1" in overrides
    assert "data.max_length=66" in overrides and "data.dir=/data/small" in overrides
    assert not any(o.startswith("output.save_model") for o in overrides)  # saved, like the scripts
    assert "output.dir=/work/x/run" in overrides


def test_defaults_row_sets_only_the_job():
    module = bench()
    plan = {"data": {"small": "/data/small"}, "model": "/models/minilm", "epochs": {"small": 2}}
    overrides = module.finetune_argv("finetune-defaults", "small", plan, Path("/work/x"))[5:]
    assert "optimizer.lr=5e-05" in overrides and "training.epochs=2" in overrides
    dropped = ("evaluation.", "checkpoints.", "early_stopping.", "output.plots", "schedule.")
    assert not [o for o in overrides if o.startswith(dropped)]


def test_ratios_pair_runs_of_the_same_round():
    module = bench()
    results = [
        {"job": "small", "config": "plain", "round": 0, "wall_seconds": 80.0},
        {"job": "small", "config": "finetune", "round": 0, "wall_seconds": 40.0},
        {"job": "small", "config": "plain", "round": 1, "wall_seconds": 90.0},
        {"job": "small", "config": "finetune", "round": 1, "wall_seconds": 60.0},
        {"job": "medium", "config": "plain", "round": 1, "wall_seconds": 900.0},
    ]
    assert module.round_ratios(results, "small", "finetune", "plain") == [2.0, 1.5]
    assert module.round_ratios(results, "medium", "finetune", "plain") == []


def test_flop_rate_is_a_share_of_the_ceiling_of_the_precision_it_ran_in():
    module = bench()
    plan = {"flops_per_epoch": {"small": 30e9}, "epochs": {"small": 2}}
    ceiling = {"ceiling_gflops": {"fp32": 100.0, "bf16": 400.0}}
    runs = [
        {"job": "small", "precision": "fp32", "training_seconds": 2.0},
        {"job": "small", "precision": "bf16", "training_seconds": 2.0, "epochs_trained": 1.0},
    ]
    module.add_flop_rates(runs, plan, ceiling)
    assert runs[0]["useful_gflops"] == pytest.approx(30.0) and runs[0]["ceiling_share"] == pytest.approx(0.3)
    assert runs[1]["useful_gflops"] == pytest.approx(15.0) and runs[1]["ceiling_share"] == pytest.approx(
        15 / 400
    )


@pytest.mark.integration
@needs_glue
def test_the_whole_harness_on_a_tiny_bert(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "scripts/bench_e2e.py", "--quick", "--tiny-model", "--jobs", "small"]
    command += ["--out-dir", str(tmp_path), "--glue", str(GLUE)]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    record = json.loads((tmp_path / "throughput-e2e-quick.json").read_text())
    page = (tmp_path / "throughput-e2e-quick.md").read_text()
    runs = {r["config"]: r for r in record["runs"]}
    assert list(runs) == ["plain", "expert", "finetune", "finetune-defaults"]
    for name, run in runs.items():
        label = {"finetune-defaults": "finetune (defaults)"}.get(name, name)
        assert f"| small | {label} ({run['precision']}) |" in page
        parts = [run[f"{p}_seconds"] for p in ("startup", "training", "evaluation", "writing")]
        assert min(parts) >= 0 and sum(parts) == pytest.approx(run["wall_seconds"])
        assert sum(parts[:3]) <= run["wall_seconds"]
        assert parts[0] < run["to_first_step_seconds"] < run["wall_seconds"]
        assert run["model_saved"] and run["useful_gflops"] > 0 and 0 < run["ceiling_share"] < 1
    assert runs["plain"]["precision"] == "fp32" and runs["plain"]["evaluations"] == 1
    assert record["summary"]["small/finetune"]["vs_plain"] == pytest.approx(
        runs["plain"]["wall_seconds"] / runs["finetune"]["wall_seconds"]
    )
    assert "quick check, not a measurement" in page
