"""The throughput harness's FLOP and MFU arithmetic, and start-up without torch."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from conftest import load_script, tiny_bert


def bench():
    return load_script("bench_throughput")


def counted_training_flops(module, inputs, loss) -> int:
    """FLOPs of one forward and backward pass as torch's FLOP counter counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        loss(module(**inputs)).backward()
    return counter.get_total_flops()


def eager_tiny_bert():
    # eager attention: the CPU's fused attention kernel is invisible to the FLOP counter
    return tiny_bert(attn_implementation="eager", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def test_flop_formula_matches_a_flop_counter_on_one_token():
    # with one token the pooler and classifier see as many tokens as the encoder: the whole model counts
    module, model = bench(), eager_tiny_bert()
    inputs = {"input_ids": torch.tensor([[101]]), "labels": torch.tensor([1])}
    counted = counted_training_flops(model, inputs, lambda out: out.loss)
    assert module.training_flops(module.matmul_parameters(model), 4, 32, [1]) == counted == 163200


def test_flop_formula_matches_a_flop_counter_per_example_length():
    # the encoder on examples of 3 and 5 tokens, each unpadded: weights 6N per token, attention 12 L d T^2
    module, encoder = bench(), eager_tiny_bert().bert.encoder
    counted = sum(
        counted_training_flops(
            encoder, {"hidden_states": torch.randn(1, n, 32, requires_grad=True)}, lambda out: out[0].sum()
        )
        for n in (3, 5)
    )
    assert module.training_flops(module.matmul_parameters(encoder), 4, 32, [3, 5]) == counted


def test_peak_flops_of_known_gpus():
    module = bench()
    assert module.peak_flops("NVIDIA H100 80GB HBM3") == pytest.approx(989e12)
    assert module.peak_flops("NVIDIA H200") == pytest.approx(989e12)
    assert module.peak_flops("NVIDIA H100 PCIe") == pytest.approx(756e12)  # not the SXM figure
    assert module.peak_flops("AMD EPYC") is None


def test_help_does_not_import_torch():
    check = (
        "import sys\nfrom finetune.cli import build_parser\n"
        "try:\n    build_parser().parse_args(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))"
    )
    output = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True).stdout
    assert output.strip().splitlines()[-1] == "[]"
