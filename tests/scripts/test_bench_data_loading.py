"""The data-preparation benchmark runs end to end on the real SST-2 files and writes its row."""

from __future__ import annotations

import json

from conftest import load_script, needs_glue


@needs_glue
def test_the_harness_times_loading_and_tokenizing(tmp_path):
    module = load_script("bench_data_loading")
    assert module.main(["--repeats", "1", "--out", str(tmp_path), "--label", "here"]) == 0
    saved = json.loads((tmp_path / "data-loading.json").read_text(encoding="utf-8"))
    assert len(saved["seconds"]["load"]) == 1 and len(saved["seconds"]["tokenize"]) == 1
    assert "| here |" in (tmp_path / "data-loading.md").read_text(encoding="utf-8")
