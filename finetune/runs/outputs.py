"""Where commands write what they make: never over an input, never over an earlier result unless asked.

`predict`, `evaluate` and `explain` call these before any work, so a refusal costs nothing.
Paths are compared resolved, so `x.tsv`, `./x.tsv` and `sub/../x.tsv` are one file.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from finetune.errors import FinetuneError


def same_path(a: Path, b: Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def refuse_input(output: Path, inputs: Iterable[Path], option: str) -> None:
    """Raise if `output` is one of `inputs`: no flag makes writing over an input right."""
    for source in inputs:
        if same_path(output, source):
            raise FinetuneError(
                f"{option} {output} is the input file {source}; writing there would destroy the input, "
                f"even with --overwrite. Choose another {option} path."
            )


def refuse_existing(path: Path, overwrite: bool, option: str) -> None:
    """Raise if the file `path` exists (unless `overwrite`), or is a folder."""
    path = Path(path)
    if path.is_dir():
        raise FinetuneError(f"{option} {path} is a folder; give the path of a file to write.")
    if path.exists() and not overwrite:
        raise FinetuneError(
            f"{path} already exists; pass --overwrite to replace it, or choose another {option} path."
        )


def check_output_file(path: Path, inputs: Iterable[Path], overwrite: bool, option: str = "--output") -> None:
    """A new file to write: not an input (ever), not an existing file (unless `overwrite`)."""
    refuse_input(path, inputs, option)
    refuse_existing(path, overwrite, option)
