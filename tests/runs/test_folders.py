"""Run folders: a new folder per run, never an existing one."""

from datetime import datetime
from pathlib import Path

import pytest

from finetune.errors import FinetuneError
from finetune.recipe import validate_recipe
from finetune.runs.folders import create_run_dir


class FrozenClock(datetime):
    @classmethod
    def now(cls, tz=None):
        return cls(2024, 5, 1, 12, 0, 0)


def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path, monkeypatch):
    monkeypatch.setattr("finetune.runs.folders.datetime", FrozenClock)  # every run starts in the same second
    recipe = validate_recipe({"name": "r", "output": {"root": str(tmp_path)}})
    first = create_run_dir(recipe)
    assert first == tmp_path / "r-20240501-120000"
    # another run looked before this one created its folder: it saw no folder, then lost the race
    monkeypatch.setattr(Path, "exists", lambda self: False)
    second = create_run_dir(recipe)
    third = create_run_dir(recipe)
    assert second == tmp_path / "r-20240501-120000-2" and third == tmp_path / "r-20240501-120000-3"
    assert all(p.is_dir() for p in (first, second, third))


def test_an_existing_output_dir_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    recipe = validate_recipe({"output": {"dir": str(tmp_path / "run")}})
    with pytest.raises(FinetuneError, match="output.dir: .* already exists; finetune never overwrites"):
        create_run_dir(recipe)
    assert create_run_dir(validate_recipe({"output": {"dir": str(tmp_path / "new" / "run")}})).is_dir()
