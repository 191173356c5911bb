"""The step profile benchmark: operator grouping and the harness end to end on a 2-layer random BERT
(scripts/bench_step_ops.py --tiny)."""

from __future__ import annotations

import json

from conftest import load_script, needs_glue


def test_operators_fall_into_the_groups_the_table_names():
    module = load_script("bench_step_ops")
    assert module.group_of("aten::addmm") == "matmul" and module.group_of("aten::bmm") == "matmul"
    assert module.group_of("aten::_scaled_dot_product_flash_attention_for_cpu") == "attention"
    assert module.group_of("aten::gelu_backward") == "elementwise"
    assert module.group_of("aten::embedding_dense_backward") == "embedding"
    assert module.group_of("aten::_fused_adamw_") == "optimizer"
    assert module.group_of("aten::empty_strided") == "other"


@needs_glue
def test_the_harness_profiles_steps_and_writes_its_table(tmp_path):
    module = load_script("bench_step_ops")
    assert module.main(["--steps", "2", "--tiny", "--tasks", "sst2", "--out", str(tmp_path)]) == 0
    saved = json.loads((tmp_path / "step-ops.json").read_text(encoding="utf-8"))
    (result,) = saved["results"]
    assert result["task"] == "sst2" and result["steps"] == 2
    assert set(result["seconds"]) >= {"matmul", "elementwise", "optimizer"}
    assert result["real_tokens_per_step"] <= result["padded_tokens_per_step"]
    assert "| sst2 |" in (tmp_path / "step-ops.md").read_text(encoding="utf-8")
