"""Data: files or hub datasets -> checked, label-encoded, tokenized `datasets.Dataset`s.

Everything that can be wrong with the data (a missing file or column, an empty split, a label in
validation that train never had, a non-numeric regression target) is found here, before the
model is loaded or a step is taken, and reported with the file and column at fault.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finetune.errors import DataError
from finetune.recipe.data import DataSection

if TYPE_CHECKING:
    from datasets import Dataset

BUILTIN_PREFIX = "builtin:"
LABEL = "labels"  # the column name the models' forward() takes
EXTENSION_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "tsv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".parquet": "parquet",
}


@dataclass
class TaskData:
    """Raw (untokenized) splits with canonical columns: `text`, optional `text_pair`, `labels`."""

    train: Dataset
    validation: Dataset
    task: str
    label_names: list[str] | None  # classification: id -> name; regression: None
    sources: dict[str, str] = field(default_factory=dict)  # split -> file path or hub id

    @property
    def num_labels(self) -> int:
        return len(self.label_names) if self.label_names is not None else 1

    @property
    def is_pair(self) -> bool:
        return "text_pair" in self.train.column_names


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


def load_hub(spec: DataSection) -> dict[str, Dataset]:
    """Load train (and validation) splits of a hub dataset; offline, say so clearly."""
    from datasets import load_dataset

    hub = spec.hub
    assert hub is not None
    splits = {"train": hub.train_split}
    if hub.validation_split is not None:
        splits["validation"] = hub.validation_split
    loaded = {}
    for role, split in splits.items():
        try:
            loaded[role] = load_dataset(hub.name, hub.config, split=split, revision=hub.revision)
        except Exception as error:
            raise DataError(
                f"data.hub: could not load '{hub.name}' (config {hub.config!r}, split {split!r}) from the "
                f"Hugging Face hub: {type(error).__name__}: {error}. Hub datasets need internet access "
                f"(and HF_HUB_OFFLINE unset); offline, download the files and point `data.train` at them."
            ) from None
    return loaded


def column_name(dataset: Dataset, column: str | int, key: str, source: str) -> str:
    """The actual column for a recipe column reference (a name, or a 0-based position)."""
    names = dataset.column_names
    if isinstance(column, int):
        if not 0 <= column < len(names):
            raise DataError(
                f"data.{key}: column position {column} is out of range for {source}, which has "
                f"{len(names)} columns: {', '.join(names)}"
            )
        return names[column]
    if column in names:
        return column
    near = difflib.get_close_matches(column, names, n=1)
    hint = f" Did you mean '{near[0]}'?" if near else ""
    raise DataError(
        f"data.{key}: column '{column}' not found in {source}. Columns there: {', '.join(names)}.{hint}"
    )


def canonical_columns(dataset: Dataset, spec: DataSection, source: str, labelled: bool = True) -> Dataset:
    """Keep the text, text-pair and label columns, renamed `text`, `text_pair`, `labels`."""
    from datasets import Value

    wanted = {"text": column_name(dataset, spec.text, "text", source)}
    if spec.text_pair is not None:
        wanted["text_pair"] = column_name(dataset, spec.text_pair, "text_pair", source)
    if labelled:
        wanted[LABEL] = column_name(dataset, spec.label, "label", source)
    if len(set(wanted.values())) < len(wanted):
        raise DataError(f"data: text, text_pair and label must be different columns (got {wanted})")
    dataset = dataset.select_columns(list(wanted.values()))
    for key in ("text", "text_pair"):
        if key in wanted:
            _check_no_missing_text(dataset, wanted[key], key, source)
    dataset = dataset.rename_columns({old: new for new, old in wanted.items() if old != new})
    for text_column in ("text", "text_pair"):
        if text_column in dataset.column_names and dataset.features[text_column] != Value("string"):
            dataset = dataset.cast_column(text_column, Value("string"))
    if labelled:
        dataset = class_names_for_ids(dataset, LABEL, spec.label, source)
    return dataset


def _check_no_missing_text(dataset: Dataset, column: str, key: str, source: str) -> None:
    """A null text cell (JSON `null`, a missing Parquet value) would crash the tokenizer: name its row."""
    missing = [i for i, value in enumerate(dataset[column]) if value is None]
    if missing:
        raise DataError(
            f"data.{key}: column '{column}' is empty (null) in {_row_hint(missing[0], source)} "
            f"({len(missing)} such row{'s' if len(missing) > 1 else ''}); fill in or remove them"
        )


def class_names_for_ids(dataset: Dataset, column: str, key: str | int, source: str) -> Dataset:
    """A `ClassLabel` column (hub datasets store ids plus names), or a list of them (tags), as names.

    Labels are then names whatever the source, so train and validation, files and hub, are encoded
    alike. `-1` is the `datasets` convention for "no label" (e.g. GLUE's test splits): an error.
    """
    from datasets import ClassLabel, List, Value

    feature = dataset.features[column]
    listed = not isinstance(feature, ClassLabel)
    inner = getattr(feature, "feature", None) if listed else feature
    if not isinstance(inner, ClassLabel):
        return dataset
    for row, value in enumerate(dataset[column]):
        if any(i is not None and i < 0 for i in (value if listed else [value])):
            raise DataError(
                f"data.label: column '{key}' has no label (-1) in {_row_hint(row, source)}; it is an "
                f"unlabelled split (like GLUE's test sets). Train and validate on labelled splits "
                f"(data.hub.train_split, data.hub.validation_split)."
            )
    features = dataset.features.copy()
    features[column] = List(Value("string")) if listed else Value("string")

    def names(batch: dict[str, list]) -> dict[str, list]:
        ids = batch[column]
        return {column: [inner.int2str(row) for row in ids] if listed else inner.int2str(ids)}

    return dataset.map(names, batched=True, features=features)


def declared_class_names(dataset: Dataset, column: str | int) -> list[str] | None:
    """The class names a `ClassLabel` column declares (hub datasets), in id order, or None.

    They are the label vocabulary as they stand: sorting them would give the model other ids than
    the data set's (MNLI: 0 entailment, 1 neutral, 2 contradiction).
    """
    from datasets import ClassLabel

    feature = dataset.features.get(column) if isinstance(column, str) else None
    return list(feature.names) if isinstance(feature, ClassLabel) else None


def _check_not_empty(dataset: Dataset, split: str, source: str) -> None:
    if len(dataset) == 0:
        raise DataError(f"data.{split}: {source} has no rows")


MOSTLY_EMPTY = 0.5  # a split whose texts are more than this share empty is an error


def check_empty_texts(dataset: Dataset, spec: DataSection, source: str) -> None:
    """Empty or whitespace-only texts: a note naming how many, an error when they are most of the split."""
    for key in ("text", "text_pair"):
        if key not in dataset.column_names:
            continue
        empty = [i for i, text in enumerate(dataset[key]) if not text.strip()]
        if not empty:
            continue
        counted = (
            f"data.{key}: {len(empty):,} of {len(dataset):,} texts in column '{getattr(spec, key)}' of "
            f"{source} are empty or whitespace-only (first: row {empty[0] + 1})"
        )
        if len(empty) > MOSTLY_EMPTY * len(dataset):
            raise DataError(
                f"{counted}. Is data.{key} the right column? Fill in the texts or remove those rows"
            )
        _note(f"note: {counted}; they train as empty inputs")


def _note(message: str) -> None:
    from finetune.distributed.processes import is_main_process

    if is_main_process():
        print(message, flush=True)


def _row_hint(index: int, source: str) -> str:
    return f"row {index + 1} of {source}"


def label_vocabulary(train: Dataset, source: str) -> list[str]:
    """Sorted class names found in the training labels (numbers sort numerically)."""
    values = train[LABEL]
    for index, value in enumerate(values):
        if value is None or (isinstance(value, str) and value.strip() == ""):
            raise DataError(f"data.label: empty label in {_row_hint(index, source)}")
    unique = set(values)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in unique):
        return [str(v) for v in sorted(unique)]
    return sorted(str(v) for v in unique)


def encode_labels(dataset: Dataset, names: list[str], split: str, source: str) -> Dataset:
    """Map class names to ids, checking every label is one train has."""
    from datasets import ClassLabel

    index = {name: i for i, name in enumerate(names)}
    unknown = sorted({str(v) for v in dataset[LABEL]} - set(index))
    if unknown:
        raise DataError(
            f"data.{split}: labels {unknown} in {source} never occur in the training data "
            f"(train labels: {names}). Fix the file, or add examples of them to train."
        )
    encoded = dataset.map(lambda batch: {LABEL: [index[str(v)] for v in batch[LABEL]]}, batched=True)
    return encoded.cast_column(LABEL, ClassLabel(names=names))


def float_targets(dataset: Dataset, split: str, source: str) -> Dataset:
    """Regression targets as float32; a value that is not a number is an error naming the row."""
    from datasets import Value

    for i, value in enumerate(dataset[LABEL]):
        try:
            float(value)
        except (TypeError, ValueError):
            raise DataError(
                f"data.label: regression target {value!r} in {_row_hint(i, source)} is not a number"
            ) from None
    return dataset.cast_column(LABEL, Value("float32"))


def label_sets(dataset: Dataset, separator: str, split: str, source: str) -> Dataset:
    """Multi-label cells as lists of names: a JSON list, or a `separator`-joined string ('' = none)."""

    def as_set(value: Any, row: int) -> list[str]:
        if value is None:
            return []
        if isinstance(value, str):
            return [part.strip() for part in value.split(separator) if part.strip()]
        if isinstance(value, (list, tuple)):
            return [str(v).strip() for v in value]
        if isinstance(value, (int, float)) and not isinstance(value, bool):  # a lone numeric label id
            return [str(value)]
        raise DataError(
            f"data.{split}: multi_label cell {value!r} in {_row_hint(row, source)} is neither a list "
            f"nor a '{separator}'-separated string (data.label_separator)"
        )

    sets = [as_set(value, row) for row, value in enumerate(dataset[LABEL])]
    return dataset.remove_columns(LABEL).add_column(LABEL, sets)


def label_set_vocabulary(train: Dataset, source: str) -> list[str]:
    """Sorted names of every label that occurs in the training label sets (numbers numerically)."""
    names = {name for labels in train[LABEL] for name in labels}
    if len(names) < 2:
        raise DataError(
            f"data.label: the training data in {source} has labels {sorted(names)}; multi_label needs at "
            f"least two. Is data.label_separator right for this file?"
        )
    if all(name.lstrip("-").isdigit() for name in names):
        return sorted(names, key=int)
    return sorted(names)


def encode_multi_hot(dataset: Dataset, names: list[str], split: str, source: str) -> Dataset:
    """Label sets -> float 0/1 vectors over `names` (the BCE target), checking every name is known."""
    from datasets import List, Value

    index = {name: i for i, name in enumerate(names)}
    unknown = sorted({name for labels in dataset[LABEL] for name in labels} - set(index))
    if unknown:
        raise DataError(
            f"data.{split}: labels {unknown} in {source} never occur in the training data "
            f"(train labels: {names}). Fix the file, or add examples of them to train."
        )

    def multi_hot(batch: dict[str, list]) -> dict[str, list]:
        vectors = []
        for labels in batch[LABEL]:
            vector = [0.0] * len(names)
            for name in labels:
                vector[index[name]] = 1.0
            vectors.append(vector)
        return {LABEL: vectors}

    encoded = dataset.map(multi_hot, batched=True)
    return encoded.cast_column(LABEL, List(Value("float32")))


def split_validation(
    train: Dataset, spec: DataSection, seed: int, stratify: bool, source: str = "the training data"
) -> tuple[Dataset, Dataset]:
    """Hold out a seeded (and, for classification, label-stratified) share of train."""
    fraction = spec.validation_fraction
    try:
        if stratify:
            try:
                parts = train.train_test_split(test_size=fraction, seed=seed, stratify_by_column=LABEL)
            except ValueError as error:  # a class with too few rows to be in both parts
                from finetune.distributed.processes import is_main_process

                if is_main_process():
                    print(
                        f"note: data.validation_fraction: the held-out validation set is not stratified "
                        f"by label ({error})",
                        flush=True,
                    )
                parts = train.train_test_split(test_size=fraction, seed=seed)
        else:
            parts = train.train_test_split(test_size=fraction, seed=seed)
    except ValueError as error:  # e.g. too few rows for both parts to be non-empty
        raise DataError(
            f"data.validation_fraction: cannot hold out {fraction:.0%} of the {len(train)} rows of {source} "
            f"for validation ({error}). Give a validation file (data.validation), or add training rows."
        ) from None
    return parts["train"], parts["test"]


def no_data_error(task: str) -> DataError:
    """The error for a recipe with neither `data.train` nor `data.hub`."""
    if task == "token_classification":
        return DataError(
            "data: the recipe names no data. Set `data.train` (a CoNLL or JSON Lines file with word and tag "
            "lists) or `data.hub.name`"
        )
    return DataError(
        "data: the recipe names no data. Set `data.train` (a csv/tsv/json/jsonl/parquet file) "
        "or `data.hub.name` (a hub dataset), e.g. `finetune train RECIPE data.train=train.csv`"
    )


def load_task_data(spec: DataSection, task: str, seed: int) -> TaskData:
    """Read, check and label-encode the train and validation splits named by the recipe."""
    if task == "token_classification":  # word lists and tag lists: their own reader
        from finetune.data.tokens import load_token_data

        return load_token_data(spec, seed)
    if spec.hub is None and spec.train is None:
        raise no_data_error(task)
    raw, sources = _read_splits(spec)
    declared = declared_class_names(raw["train"], spec.label)  # hub ClassLabel names, in id order
    train = canonical_columns(raw["train"], spec, sources["train"])
    _check_not_empty(train, "train", sources["train"])
    check_empty_texts(train, spec, sources["train"])
    validation = None
    if "validation" in raw:
        validation = canonical_columns(raw["validation"], spec, sources["validation"])
        _check_not_empty(validation, "validation", sources["validation"])
        check_empty_texts(validation, spec, sources["validation"])

    label_names = None
    if task == "classification":
        label_names = declared or label_vocabulary(train, sources["train"])
        if len(label_names) < 2:
            raise DataError(
                f"data.label: the training data has a single label {label_names} in column "
                f"'{spec.label}'; classification needs at least two classes"
            )
        train = encode_labels(train, label_names, "train", sources["train"])
        if validation is not None:
            validation = encode_labels(validation, label_names, "validation", sources["validation"])
    elif task == "multi_label":
        train = label_sets(train, spec.label_separator, "train", sources["train"])
        label_names = label_set_vocabulary(train, sources["train"])
        train = encode_multi_hot(train, label_names, "train", sources["train"])
        if validation is not None:
            validation = label_sets(validation, spec.label_separator, "validation", sources["validation"])
            validation = encode_multi_hot(validation, label_names, "validation", sources["validation"])
    else:
        train = float_targets(train, "train", sources["train"])
        if validation is not None:
            validation = float_targets(validation, "validation", sources["validation"])

    if validation is None:
        train, validation = split_validation(
            train, spec, seed, stratify=task == "classification", source=sources["train"]
        )
        sources["validation"] = f"{spec.validation_fraction:.0%} of {sources['train']} (seed {seed})"
    if spec.max_train_samples is not None and spec.max_train_samples < len(train):
        train = train.shuffle(seed=seed).select(range(spec.max_train_samples))
    if spec.max_eval_samples is not None and spec.max_eval_samples < len(validation):
        validation = validation.select(range(spec.max_eval_samples))
    return TaskData(train=train, validation=validation, task=task, label_names=label_names, sources=sources)


def _read_splits(spec: DataSection) -> tuple[dict[str, Dataset], dict[str, str]]:
    if spec.hub is not None:
        splits = load_hub(spec)
        name = spec.hub.name + (f"/{spec.hub.config}" if spec.hub.config else "")
        return splits, {role: f"{name}[{role}]" for role in splits}
    assert spec.train is not None
    paths = {"train": resolve_path(spec, spec.train, "train")}
    if spec.validation is not None:
        paths["validation"] = resolve_path(spec, spec.validation, "validation")
    return {role: read_file(spec, path, role) for role, path in paths.items()}, {
        r: str(p) for r, p in paths.items()
    }


def tokenize(dataset: Dataset, tokenizer: Any, max_length: int) -> Dataset:
    """Tokenize (truncating, not padding: batches are padded dynamically) and add a `length` column."""
    pair = "text_pair" in dataset.column_names

    def encode(batch: dict[str, list]) -> dict[str, list]:
        encoded = tokenizer(
            batch["text"], batch["text_pair"] if pair else None, truncation=True, max_length=max_length
        )
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
        return encoded

    drop = [c for c in ("text", "text_pair") if c in dataset.column_names]
    return dataset.map(encode, batched=True, remove_columns=drop, desc="Tokenizing")
