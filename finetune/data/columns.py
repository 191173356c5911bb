"""Columns: the recipe's text, text-pair and label columns -> the canonical `text`, `text_pair`, `labels`.

Also the checks on those columns: a missing column, null or empty texts, hub `ClassLabel` ids (as
names) and unlabelled rows.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from finetune.errors import DataError
from finetune.recipe.data import DataSection

if TYPE_CHECKING:
    from datasets import Dataset

LABEL = "labels"  # the column name the models' forward() takes


def column_values(dataset: Dataset, column: str) -> list:
    """Every value of a column as a list. `dataset[column]` is a lazy `Column` in datasets 4+ whose
    iteration reads row by row (about 1 s per 67k rows); slicing it reads the Arrow column at once."""
    return dataset[column][:]


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
    missing = [i for i, value in enumerate(column_values(dataset, column)) if value is None]
    if missing:
        raise DataError(
            f"data.{key}: column '{column}' is empty (null) in {row_hint(missing[0], source)} "
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
    for row, value in enumerate(column_values(dataset, column)):
        if any(i is not None and i < 0 for i in (value if listed else [value])):
            raise DataError(
                f"data.label: column '{key}' has no label (-1) in {row_hint(row, source)}; it is an "
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


MOSTLY_EMPTY = 0.5  # a split whose texts are more than this share empty is an error


def check_empty_texts(dataset: Dataset, spec: DataSection, source: str) -> None:
    """Empty or whitespace-only texts: a note naming how many, an error when they are most of the split."""
    for key in ("text", "text_pair"):
        if key not in dataset.column_names:
            continue
        empty = [i for i, text in enumerate(column_values(dataset, key)) if not text.strip()]
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


def row_hint(index: int, source: str) -> str:
    return f"row {index + 1} of {source}"
