"""Data files: where they are, their format and encoding, and reading them into a `datasets.Dataset`.

A missing file, a folder where a file is expected, an unknown extension, a 0-byte file, bytes the
encoding cannot decode, or a row with more values than the header: each is an error naming the file
(and line), found before anything else is read.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finetune.errors import DataError
from finetune.recipe.data import DataSection

if TYPE_CHECKING:
    from datasets import Dataset

BUILTIN_PREFIX = "builtin:"


EXTENSION_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "tsv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".parquet": "parquet",
}


def builtin_data_dir(name: str) -> Path:
    """Folder of a data set that ships inside the package (`builtin:demo`)."""
    folder = Path(__file__).resolve().parent / "builtin" / name
    if not folder.is_dir():
        parent = folder.parent
        available = sorted(p.name for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []
        raise DataError(f"data.dir: no built-in data set '{name}'; built-in sets: {', '.join(available)}")
    return folder


def resolve_path(spec: DataSection, relative: str, key: str) -> Path:
    """Resolve a `data.train`/`data.validation` path against `data.dir` and check it exists."""
    base = Path.cwd()
    if spec.dir is not None:
        base = (
            builtin_data_dir(spec.dir[len(BUILTIN_PREFIX) :])
            if spec.dir.startswith(BUILTIN_PREFIX)
            else Path(spec.dir)
        )
    path = Path(relative) if Path(relative).is_absolute() else base / relative
    if path.is_dir():
        raise DataError(folder_not_file(path, key))
    if not path.is_file():
        hint = ""
        if path.parent.is_dir():
            near = difflib.get_close_matches(path.name, [p.name for p in path.parent.iterdir()], n=3)
            hint = f" Files with similar names there: {', '.join(near)}." if near else ""
        elif spec.dir is None:
            hint = " Set `data.dir` to the folder that holds the data (e.g. `data.dir=../shared/data/glue`)."
        raise DataError(f"data.{key}: file not found: {path}.{hint}")
    return path


def folder_not_file(path: Path, key: str) -> str:
    """The message for a data file that is a folder: a file is expected, perhaps one inside it."""
    inside = sorted(p for p in path.iterdir() if p.suffix.lower() in EXTENSION_FORMATS)
    example = f", e.g. data.{key}={inside[0]}" if inside else ""
    return (
        f"data.{key}: {path} is a folder, but data.{key} takes a data file "
        f"({', '.join(sorted(set(EXTENSION_FORMATS.values())))}){example}."
    )


def file_format(spec: DataSection, path: Path) -> str:
    if spec.format != "auto":
        return spec.format
    fmt = EXTENSION_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"data: cannot tell the format of {path} from its extension; set `data.format` "
            f"to one of csv, tsv, json, jsonl, parquet"
        )
    return fmt


def text_codec(encoding: str) -> str:
    """The codec text files are read with: `data.encoding`, skipping a UTF-8 byte-order mark."""
    return "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding


def check_readable(path: Path, encoding: str | None, split: str) -> None:
    """A 0-byte file, or (text formats) a byte `encoding` cannot decode: an error naming file and line."""
    if path.stat().st_size == 0:
        raise DataError(
            f"data.{split}: {path} is empty (0 bytes); point data.{split} at the file with the data"
        )
    offset = None if encoding is None else first_bad_byte(path, encoding)
    if offset is not None:
        raise DataError(_encoding_message(path, encoding, offset, split))


def first_bad_byte(path: Path, encoding: str) -> int | None:
    """Offset of the first byte of `path` that `encoding` cannot decode, or None (read in 1 MiB blocks)."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset = 0
    with path.open("rb") as handle:
        while True:
            block = handle.read(1 << 20)
            pending = len(decoder.getstate()[0])  # bytes of a character split across blocks
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as error:
                return offset - pending + error.start
            if not block:
                return None
            offset += len(block)


def _encoding_message(path: Path, encoding: str, offset: int, split: str) -> str:
    with path.open("rb") as handle:
        before = handle.read(offset + 1)
    line, column = before.count(b"\n") + 1, offset - before.rfind(b"\n", 0, offset)
    return (
        f"data.{split}: {path} is not valid {encoding} text (data.encoding): line {line}, column {column} "
        f"(byte offset {offset}) holds byte 0x{before[-1]:02x}, which {encoding} cannot decode. Re-encode the "
        f"file as UTF-8 or set data.encoding: latin-1 (or the encoding it was written in, e.g. cp1252)"
    )


def _reader(spec: DataSection, fmt: str, path: Path) -> tuple[str, dict[str, Any]]:
    """The `load_dataset` builder for a file format, and its options."""
    if fmt in ("csv", "tsv"):
        return "csv", _csv_options(spec, fmt, path)
    if fmt in ("json", "jsonl"):
        return "json", {"encoding": spec.encoding}
    return "parquet", {}


def _csv_options(spec: DataSection, fmt: str, path: Path) -> dict[str, Any]:
    """`load_dataset("csv")` options; without a header, columns are named by position: 0, 1, ..."""
    options: dict[str, Any] = {
        "delimiter": "\t" if fmt == "tsv" else ",",
        "encoding": text_codec(spec.encoding),
        "keep_default_na": False,
    }
    if fmt == "tsv":
        options["quoting"] = csv.QUOTE_NONE  # GLUE's TSVs hold `"` characters that are text, not quoting
    width = _csv_width(path, options)
    if not spec.header:
        options.update(column_names=[str(i) for i in range(width)], header=None)
    return options


def _csv_width(path: Path, options: dict[str, Any]) -> int:
    """Columns of the first line. pandas takes a longer second line for an index column (shifting every
    column) where it should be an error: read alone, without a header, it is one (pandas' ParserError)."""
    import pandas as pd

    quoting = options.get("quoting", csv.QUOTE_MINIMAL)
    sep, encoding = options["delimiter"], options["encoding"]
    first = pd.read_csv(path, header=None, nrows=2, dtype=str, sep=sep, encoding=encoding, quoting=quoting)
    return first.shape[1]


RAGGED = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def _unreadable(error: Exception, path: Path, fmt: str, spec: DataSection, split: str) -> DataError:
    """The cause of a read error that `datasets` hides behind 'An error occurred while generating'."""
    cause = error
    while cause.__cause__ is not None or cause.__context__ is not None:
        cause = cause.__cause__ or cause.__context__
    ragged = RAGGED.search(str(cause))
    if ragged:
        return DataError(_ragged_message(path, fmt, spec, split, *map(int, ragged.groups())))
    if "corresponds to no data" in str(error):
        return DataError(f"data.{split}: {path} has no rows")
    return DataError(f"data.{split}: could not read {path} as {fmt}: {type(cause).__name__}: {cause}")


def _ragged_message(
    path: Path, fmt: str, spec: DataSection, split: str, expected: int, line: int, found: int
) -> str:
    first = "the header (line 1)" if spec.header else "line 1"
    fix = (
        "TSV is read without quoting, so a text cannot hold a tab: replace the extra tabs"
        if fmt == "tsv"
        else 'put a text that holds a comma in double quotes ("a, b"), or remove the extra values'
    )
    return f"data.{split}: {path}, line {line}: {found} columns where {first} has {expected}; {fix}"


def read_file(spec: DataSection, path: Path, split: str = "train") -> Dataset:
    """Read one data file into a `datasets.Dataset` (cached by `datasets`)."""
    from datasets import load_dataset

    fmt = file_format(spec, path)
    check_readable(path, None if fmt == "parquet" else spec.encoding, split)
    try:
        builder, options = _reader(spec, fmt, path)
        dataset = load_dataset(builder, data_files={"data": str(path)}, split="data", **options)
    except Exception as error:  # datasets raises many types for unreadable files
        raise _unreadable(error, path, fmt, spec, split) from None
    return _clean_column_names(dataset)


def read_head(spec: DataSection, path: Path, split: str = "train") -> Dataset:
    """The first row of a data file, read as `read_file` reads the whole file (same format, options
    and errors), for checks that need only the columns: `finetune validate`. Streamed: only the first
    block of the file is parsed."""
    from datasets import Dataset, load_dataset

    fmt = file_format(spec, path)
    check_readable(path, None if fmt == "parquet" else spec.encoding, split)
    try:
        builder, options = _reader(spec, fmt, path)
        rows = load_dataset(builder, data_files={"data": str(path)}, split="data", streaming=True, **options)
        first = next(iter(rows), None)
    except Exception as error:  # datasets raises many types for unreadable files
        raise _unreadable(error, path, fmt, spec, split) from None
    if first is None:
        raise DataError(f"data.{split}: {path} has no rows")
    return _clean_column_names(Dataset.from_list([first]))


def _clean_column_names(dataset: Dataset) -> Dataset:
    """Column names without a byte-order mark or surrounding spaces (`text ` is `text`)."""
    renames = {c: c.lstrip("\ufeff").strip() for c in dataset.column_names if c != c.lstrip("\ufeff").strip()}
    return dataset.rename_columns(renames) if renames else dataset
