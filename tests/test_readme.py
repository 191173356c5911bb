"""The README is the manual: it opens with the two commands and documents every recipe key."""

import shutil
import subprocess
import sys

from conftest import REPO


def readme_commands() -> list[str]:
    """The commands of the README's first code block (comments dropped)."""
    first_block = (REPO / "README.md").read_text().split("```")[1]
    return [line.split("#")[0].strip() for line in first_block.strip().splitlines()]


def test_readme_opens_with_the_two_commands():
    assert readme_commands() == ["make demo", "make test"]


def test_recipe_reference_is_generated_from_the_current_schema():
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "recipe_reference.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_ci_runs_the_readme_test_command(tmp_path):
    """`.ci/run` with only bash, dirname and a recording stand-in for the README's program on PATH."""
    program, *arguments = readme_commands()[1].split()
    record = tmp_path / "record"
    stub = tmp_path / program
    stub.write_text(f'#!/bin/sh\nprintf "%s\\n" "$PWD" "$@" > {record}\n')
    stub.chmod(0o755)
    for tool in ("bash", "dirname"):
        (tmp_path / tool).symlink_to(shutil.which(tool))
    done = subprocess.run(
        [str(REPO / ".ci" / "run")], env={"PATH": str(tmp_path)}, cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr  # 127: .ci/run runs something other than the README says
    assert record.read_text().splitlines() == [str(REPO), *arguments]
