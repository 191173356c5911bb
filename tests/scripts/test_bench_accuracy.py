"""The accuracy benchmark's tables: a saved run re-drawn beside its own json, nothing else touched."""

from __future__ import annotations

import json

from conftest import load_script


def saved_run() -> dict:
    """A saved two-arm, two-seed STS-B run as bench_accuracy writes it."""
    runs = [("default", 0, 0.77), ("default", 1, 0.75), ("recommended", 0, 0.70), ("recommended", 1, 0.80)]
    results = [
        {"task": "stsb", "regime": "500", "arm": arm, "seed": seed, "pearson": value, "seconds": 60.0}
        for arm, seed, value in runs
    ]
    command = "python scripts/bench_accuracy.py --tasks stsb --name small"
    return {
        "command": command,
        "minutes": 2.0,
        "jobs": 2,
        "seeds": 2,
        "arms": ["default", "recommended"],
        "results": results,
    }


def test_render_redraws_the_table_beside_its_json_and_leaves_every_other_file_alone(tmp_path):
    saved = tmp_path / "small.json"
    saved.write_text(json.dumps(saved_run(), indent=2), encoding="utf-8")
    written = saved.read_bytes()
    (tmp_path / "accuracy.md").write_text("someone's table\n", encoding="utf-8")
    assert load_script("bench_accuracy").main(["--render", str(saved)]) == 0
    table = (tmp_path / "small.md").read_text(encoding="utf-8")
    assert "| stsb (pearson) | 500 | 76.00 ± 1.41 | 75.00 ± 7.07 | -1.00 |" in table
    assert (tmp_path / "accuracy.md").read_text(encoding="utf-8") == "someone's table\n"
    assert saved.read_bytes() == written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["accuracy.md", "small.json", "small.md"]
