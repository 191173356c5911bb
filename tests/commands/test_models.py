"""`finetune report` (finetune/commands/models.py): report.md and the model card written again."""

import pytest

from finetune.cli import main
from finetune.errors import FinetuneError
from finetune.runs.reading import read_run
from finetune.runs.report import write_report


def test_report_command_rewrites_and_handles_unfinished_runs(run_dir, tmp_path, capsys):
    (run_dir / "report.md").unlink()
    assert main(["report", str(run_dir)]) == 0
    assert (run_dir / "report.md").is_file() and "report.md" in capsys.readouterr().out
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "recipe.yaml").write_text((run_dir / "recipe.yaml").read_text())
    assert "it did not finish" in write_report(unfinished).read_text()
    with pytest.raises(FinetuneError, match="not a run folder"):
        read_run(tmp_path)
