"""The throughput harness's FLOP and MFU arithmetic, and start-up without torch."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
from conftest import REPO, tiny_bert


def bench():
    spec = importlib.util.spec_from_file_location(
        "bench_throughput", REPO / "scripts" / "bench_throughput.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_matmul_parameters_count_linear_weights_without_embeddings():
    # tiny BERT: hidden 32, 4 layers, intermediate 37, 2 labels
    per_layer = 4 * 32 * 32 + 2 * 32 * 37  # Q, K, V, attention output; FFN in and out
    expected = 4 * per_layer + 32 * 32 + 32 * 2  # + pooler + classifier
    assert bench().matmul_parameters(tiny_bert()) == expected == 26944


def test_training_flops_follow_6n_plus_attention():
    module = bench()
    assert module.training_flops(1000, 2, 8, [3]) == 6 * 1000 * 3 + 12 * 2 * 8 * 3 * 3
    # summed per example: padding is not counted, and attention grows with each example's own length
    assert module.training_flops(1000, 2, 8, [3, 5]) == module.training_flops(
        1000, 2, 8, [3]
    ) + module.training_flops(1000, 2, 8, [5])


def test_peak_flops_of_known_gpus():
    module = bench()
    assert module.peak_flops("NVIDIA H100 80GB HBM3") == pytest.approx(989e12)
    assert module.peak_flops("NVIDIA H200") == pytest.approx(989e12)
    assert module.peak_flops("AMD EPYC") is None


def test_help_does_not_import_torch():
    check = (
        "import sys\nfrom finetune.cli import build_parser\n"
        "try:\n    build_parser().parse_args(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))"
    )
    output = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True).stdout
    assert output.strip().splitlines()[-1] == "[]"
