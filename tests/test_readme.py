"""The README is the front page: it opens with the two commands, stays short, and links to the guides in
docs/ (the recipe reference there documents every recipe key); every relative link resolves."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO

README_LIMIT = 20_000  # bytes: the front page; the guides live in docs/


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


def test_readme_is_a_front_page_under_20_kb():
    size = len((REPO / "README.md").read_bytes())
    assert size < README_LIMIT, f"README.md is {size:,} bytes; move detail into a guide in docs/"


def documentation_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "benchmarks" / "README.md"]


def outside_code_blocks(text: str) -> list[str]:
    """The lines of a Markdown text that are not inside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation except - and _ dropped, spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def heading_anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file; a repeated heading gets -1, -2, ... as on GitHub."""
    anchors: set[str] = set()
    for line in outside_code_blocks(path.read_text(encoding="utf-8")):
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            slug = github_slug(match.group(1))
            count, unique = 0, slug
            while unique in anchors:
                count += 1
                unique = f"{slug}-{count}"
            anchors.add(unique)
    return anchors


def relative_links(path: Path) -> list[str]:
    """The targets of the inline links and images of a Markdown file that are not URLs."""
    text = "\n".join(outside_code_blocks(path.read_text(encoding="utf-8")))
    # code spans hold brackets and parentheses that are no links (``...`` first: it may hold single backticks)
    text = re.sub(r"``.+?``", "", text, flags=re.S)
    text = re.sub(r"`[^`]*`", "", text)
    targets = re.findall(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", text)
    return [target for target in targets if not re.match(r"[a-z][a-z0-9+.-]*:", target)]


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path
        if not destination.exists():
            broken.append(f"{target}: {destination} does not exist")
        elif anchor and destination.suffix == ".md" and anchor not in heading_anchors(destination):
            broken.append(f"{target}: no heading of {destination.name} has the anchor #{anchor}")
    return broken


def test_every_relative_link_of_the_documentation_resolves():
    """README.md, docs/*.md and benchmarks/README.md: each linked file exists, each #anchor is a heading."""
    files = documentation_files()
    assert len(files) > 10 and all(path.is_file() for path in files)
    assert sum(len(relative_links(path)) for path in files) > 50  # the parser found the links
    broken = {path.relative_to(REPO).as_posix(): broken_links(path) for path in files}
    broken = {name: links for name, links in broken.items() if links}
    assert not broken, "broken links:\n" + "\n".join(
        f"  {name}: {link}" for name, links in broken.items() for link in links
    )


def test_the_link_check_finds_a_missing_file_and_a_missing_anchor(tmp_path):
    (tmp_path / "guide.md").write_text("# A guide\n\n## Headerless files\n\n## `data:` keys\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](guide.md#headerless-files) [ok](guide.md#data-keys) [ok](#a-page) [web](https://x.org/#y)\n"
        "```\n[not a link](nowhere.md)\n```\n`[code](nowhere.md)`\n\n# A page\n"
        "[gone](missing.md) [no anchor](guide.md#header-less-files)\n"
    )
    assert [link.split(":")[0] for link in broken_links(page)] == ["missing.md", "guide.md#header-less-files"]


def test_the_headerless_file_example_is_a_valid_recipe_without_a_header_row(tmp_path):
    """docs/data-and-tasks.md's worked example: integer column positions, header: false."""
    from finetune.recipe import load_recipe

    guide = (REPO / "docs" / "data-and-tasks.md").read_text()
    assert "[headerless files](docs/data-and-tasks.md#headerless-files)" in (REPO / "README.md").read_text()
    block = guide.split("# reviews.yaml\n")[1].split("```")[0]
    (tmp_path / "reviews.yaml").write_text(block)
    data = load_recipe(tmp_path / "reviews.yaml").data
    assert (data.header, data.text, data.label) == (False, 1, 0)
    (tmp_path / "implied.yaml").write_text(block.replace("  header: false", "  # header left out"))
    assert load_recipe(tmp_path / "implied.yaml").data.header is False  # integer positions imply it
