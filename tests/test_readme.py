"""The README is the manual: it opens with the two commands and documents every recipe key."""

import subprocess
import sys

from conftest import REPO


def test_readme_opens_with_the_two_commands():
    text = (REPO / "README.md").read_text()
    first_block = text.split("```")[1]
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["make demo", "make test"]


def test_recipe_reference_is_generated_from_the_current_schema():
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "recipe_reference.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_ci_runs_the_readme_test_command():
    assert "make test" in (REPO / ".ci" / "run").read_text()
