"""The one-command GPU benchmark: its data, its timing window, its arithmetic, and the whole command
end to end on the CPU with a tiny BERT (scripts/bench_gpu.sh --tiny --device cpu)."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
from types import SimpleNamespace

import pytest
from conftest import REPO, load_script


def bench():
    return load_script("bench_gpu")


def test_configurations_combine_variants_and_reject_unknown_names():
    module = bench()
    assert module.parse_config("finetune+compile+batch-128") == ("finetune", ["compile", "batch-128"])
    assert module.parse_config("plain") == ("plain", [])
    for bad, named in (
        ("finetune+turbo", "'turbo'"),
        ("expert+compile", "'expert+compile'"),
        ("trainer", "'trainer'"),
    ):
        with pytest.raises(SystemExit, match=re.escape(named)):
            module.parse_config(bad)


def test_synthetic_lengths_spread_like_sentences_within_max_length():
    lengths = bench().synthetic_lengths(20000, 128)
    assert lengths == bench().synthetic_lengths(20000, 128)  # the same data in every process
    assert min(lengths) >= 8 and max(lengths) == 128
    assert 57 <= statistics.median(lengths) <= 63  # median 47% of 128 = 60
    truncated = sum(t == 128 for t in lengths) / len(lengths)
    assert 0.04 < truncated < 0.10  # P(lognormal(ln 60, 0.5) > 128) = 6.5%


def test_padding_efficiency_of_random_batches():
    module = bench()
    assert module.padding_efficiency([2, 4], batch=2) == pytest.approx(6 / 8)
    assert module.padding_efficiency([3, 5, 7], batch=1) == 1.0


def test_the_synthetic_tokenizer_makes_one_token_per_word(tmp_path):
    from transformers import AutoTokenizer

    module = bench()
    task = module.write_data(tmp_path / "data", rows=64, dev_rows=8, max_length=32)
    tokenizer = AutoTokenizer.from_pretrained(
        module.write_model(tmp_path / "model", tiny=True, max_length=32)
    )
    texts = [line.split("\t")[0] for line in (tmp_path / "data" / "train.tsv").read_text().splitlines()[1:]]
    tokenized = [len(tokenizer(text)["input_ids"]) for text in texts]
    assert tokenized == module.synthetic_lengths(64, 32)  # the lengths MFU is computed from
    assert task["max_length"] == 32 and not task["pair"]


def test_the_window_skips_warmup_and_stops_training_when_full():
    window = bench().StepWindow(warmup=2, max_steps=3, max_seconds=60.0)
    control = SimpleNamespace(should_training_stop=False)
    for step in range(1, 5):
        window.step(step, control)
    assert window.started is not None and not window.seconds and not control.should_training_stop
    window.step(5, control)
    assert window.steps == 3 and window.seconds > 0 and control.should_training_stop
    window.close(9)  # the epoch's end after the window closed changes nothing
    assert window.steps == 3


def test_the_window_closes_at_the_epoch_end_when_the_data_runs_out():
    window = bench().StepWindow(warmup=1, max_steps=100, max_seconds=60.0)
    window.step(1, SimpleNamespace(should_training_stop=False))
    window.close(7)
    assert window.steps == 6


def test_tokens_mfu_and_ratios_by_hand():
    module = bench()
    results = [
        {"config": "plain", "status": "ok", "samples_per_second": 100.0, "flops_per_example": 1e9},
        {"config": "expert", "status": "ok", "samples_per_second": 200.0, "flops_per_example": 1e9},
        {"config": "finetune", "status": "ok", "samples_per_second": 250.0, "flops_per_example": 2e9},
        {"config": "finetune+compile", "status": "skipped: GPU only"},
    ]
    module.complete(results, mean_length=60.0, peak=1e12)
    finetune = results[2]
    assert finetune["tokens_per_second"] == pytest.approx(15000.0)
    assert finetune["mfu"] == pytest.approx(250 * 2e9 / 1e12)  # 0.5
    assert (finetune["vs_plain"], finetune["vs_expert"]) == (pytest.approx(2.5), pytest.approx(1.25))
    assert module.targets(results) == (
        "Targets (finetune defaults, H100/H200): MFU >= 40%: met (50.0%); "
        "finetune / plain >= 1.3x: met (2.50x); finetune / expert >= 1.1x: met (1.25x)."
    )
    module.complete(results, mean_length=60.0, peak=None)
    assert results[2]["mfu"] is None and "MFU >= 40%: n/a" in module.targets(results)


def test_the_budget_skips_what_no_longer_fits():
    module = bench()
    done = [{"config": "plain", "wall_seconds": 40.0}, {"config": "expert", "wall_seconds": 50.0}]
    assert module.estimate("finetune+batch-128", done) == 50.0
    assert module.estimate("finetune+compile", done) == 125.0


def test_every_default_configuration_is_known_and_described():
    module = bench()
    assert module.DEFAULT_CONFIGS[:3] == ["plain", "expert", "finetune"]  # the budget never skips these
    assert all(module.describe(name) for name in module.DEFAULT_CONFIGS)
    used = {v for name in module.DEFAULT_CONFIGS for v in module.parse_config(name)[1]}
    assert used == set(module.VARIANTS)


# The three configurations, every variant (in one combined row: each worker process costs seconds of
# imports on a shared CPU), and a GPU-only one that the CPU run lists as skipped.
CONFIGS = [
    "plain",
    "expert",
    "finetune",
    "finetune+batch-128+no-step-syncs+foreach-adamw+eager-attention",
    "finetune+compile",
]


@pytest.mark.integration
def test_the_whole_command_on_the_cpu_with_a_tiny_bert(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    command = ["bash", "scripts/bench_gpu.sh", "--tiny", "--device", "cpu", "--configs", ",".join(CONFIGS)]
    command += ["--out-dir", str(tmp_path), "--out", "tiny"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    module = bench()
    page = (tmp_path / "tiny.md").read_text()
    rows = {
        line.split(" | ")[0].strip("| "): line.split(" | ")
        for line in page.splitlines()
        if line.startswith("| ")
    }
    results = {r["config"]: r for r in json.loads((tmp_path / "tiny.json").read_text())["results"]}
    assert list(results) == CONFIGS and set(CONFIGS) <= set(rows)
    lengths = module.synthetic_lengths(module.SIZES["tiny"]["rows"], module.SIZES["tiny"]["max_length"])
    assert results.pop("finetune+compile")["status"] == "skipped: GPU only"  # torch.compile: GPU only
    assert "skipped: GPU only" in rows["finetune+compile"][1]
    for name, result in results.items():
        assert result["status"] == "ok" and result["steps"] == 3
        assert result["samples_per_second"] > 0 and float(rows[name][1]) > 0
        assert result["tokens_per_second"] == pytest.approx(
            result["samples_per_second"] * statistics.mean(lengths)
        )
        assert result["mfu"] is None and rows[name][3] == "n/a"  # no GPU peak on a CPU
    finetune, variants = results["finetune"]["details"], results[CONFIGS[3]]["details"]
    assert results["plain"]["details"]["precision"] == "fp32"
    assert (finetune["batch_size"], variants["batch_size"]) == (32, 128)
    assert finetune["fused"] and not variants["fused"] and variants["foreach"]
    assert (finetune["attention"], variants["attention"]) == ("sdpa", "eager")
    assert (finetune["token_count"], variants["token_count"]) == ("non_padding", "no")
    assert "tiny harness check on the CPU, not a measurement" in page
