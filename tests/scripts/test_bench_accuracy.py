"""The accuracy benchmark's tables: a saved run re-drawn beside its own json, nothing else touched."""

from __future__ import annotations

import json
import shutil

from conftest import REPO, load_script


def test_render_redraws_the_table_beside_its_json_and_leaves_other_tables_alone(tmp_path):
    shutil.copy(REPO / "benchmarks" / "reinit-stsb.json", tmp_path / "reinit-stsb.json")
    (tmp_path / "accuracy.md").write_text("someone's table\n", encoding="utf-8")
    module = load_script("bench_accuracy")
    assert module.main(["--render", str(tmp_path / "reinit-stsb.json")]) == 0
    table = (tmp_path / "reinit-stsb.md").read_text(encoding="utf-8")
    assert "| stsb (pearson) | 500 | 76.55 ± 1.15 | 74.74 ± 5.24 | -1.81 |" in table
    assert (tmp_path / "accuracy.md").read_text(encoding="utf-8") == "someone's table\n"
    assert json.loads((tmp_path / "reinit-stsb.json").read_text(encoding="utf-8"))["seeds"] == 5
