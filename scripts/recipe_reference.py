"""Write the recipe reference (docs/recipe-reference.md) from the recipe schema (the one source of truth).

    python scripts/recipe_reference.py          # rewrite the reference in docs/recipe-reference.md
    python scripts/recipe_reference.py --check  # exit 1 if it is out of date (used by tests)

The generated part sits between the markers `<!-- recipe-reference:start -->` and
`<!-- recipe-reference:end -->`; the page's title and introduction above them are written by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from finetune.recipe.loading import inner_model  # noqa: E402
from finetune.recipe.schema import Recipe  # noqa: E402

START, END = "<!-- recipe-reference:start -->", "<!-- recipe-reference:end -->"
PAGE = REPO / "docs" / "recipe-reference.md"
NAME = PAGE.relative_to(REPO).as_posix()  # as messages show it


def _default(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, BaseModel):
            return "(section)"
    else:
        value = field.default
    if value is PydanticUndefined:
        return "required"
    return "`" + json.dumps(value) + "`"


def _type(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    text = text or str(annotation).replace("typing.", "")
    return text.replace("NoneType", "null").replace("Literal", "one of ")


def section_table(model: type[BaseModel], prefix: str) -> list[str]:
    rows = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    nested: list[tuple[str, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        inner = inner_model(field.annotation)
        if inner is not None and inner is not model:
            nested.append((f"{prefix}{name}", inner))
            kind = "mapping"
        else:
            kind = _type(field.annotation)
        description = " ".join((field.description or "").split()).replace("|", "\\|")
        rows.append(f"| `{prefix}{name}` | {kind.replace('|', 'or')} | {_default(field)} | {description} |")
    lines = rows
    for path, inner in nested:
        doc = (
            " ".join((inner.__doc__ or "").split())
            if inner.__doc__ and "Usage docs" not in inner.__doc__
            else ""
        )
        lines += ["", f"**`{path}`**" + (f": {doc}" if doc else ""), "", *section_table(inner, f"{path}.")]
    return lines


def section_doc(name: str, section: type[BaseModel]) -> str:
    """The module docstring of the section (one module per section), or, when that module opens
    with another section (`training.py` also holds `evaluation:`), the section class's own."""
    module = sys.modules[section.__module__].__doc__ or ""
    if module.startswith(f"`{name}:`"):
        return module
    return section.__dict__.get("__doc__") or module


def reference() -> str:
    lines = [
        START,
        "",
        "_Generated from the schema by `python scripts/recipe_reference.py`; do not edit by hand._",
        "",
    ]
    top = [(n, f) for n, f in Recipe.model_fields.items() if inner_model(f.annotation) is None]
    for name, field in top:
        lines.append(
            f"- `{name}` ({_type(field.annotation)}, default {_default(field)}): {field.description}"
        )
    for name, field in Recipe.model_fields.items():
        section = inner_model(field.annotation)
        if section is None:
            continue
        doc = " ".join(section_doc(name, section).split())
        lines += ["", f"## `{name}:`", "", doc, "", *section_table(section, f"{name}.")]
    lines += ["", END]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help=f"fail if {NAME} is out of date")
    args = parser.parse_args()
    text = PAGE.read_text(encoding="utf-8")
    if START not in text or END not in text:
        print(f"{NAME} lacks the markers {START} ... {END}", file=sys.stderr)
        return 1
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    updated = before + reference() + after
    if args.check:
        if updated != text:
            print(
                f"{NAME} is out of date with the recipe schema: run python scripts/recipe_reference.py",
                file=sys.stderr,
            )
            return 1
        return 0
    PAGE.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
