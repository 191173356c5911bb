"""Label encoding: class names -> ids, regression targets -> floats, label sets -> multi-hot vectors.

The vocabulary comes from the training labels; a validation label that train never had, or a target
that is not a number, is an error naming the row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from finetune.data.columns import LABEL, column_values, row_hint
from finetune.errors import DataError

if TYPE_CHECKING:
    from datasets import Dataset


def label_vocabulary(train: Dataset, source: str) -> list[str]:
    """Sorted class names found in the training labels (numbers sort numerically)."""
    values = column_values(train, LABEL)
    for index, value in enumerate(values):
        if value is None or (isinstance(value, str) and value.strip() == ""):
            raise DataError(f"data.label: empty label in {row_hint(index, source)}")
    unique = set(values)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in unique):
        return [str(v) for v in sorted(unique)]
    return sorted(str(v) for v in unique)


def encode_labels(dataset: Dataset, names: list[str], split: str, source: str) -> Dataset:
    """Map class names to ids, checking every label is one train has."""
    from datasets import ClassLabel

    index = {name: i for i, name in enumerate(names)}
    unknown = sorted({str(v) for v in column_values(dataset, LABEL)} - set(index))
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

    for i, value in enumerate(column_values(dataset, LABEL)):
        try:
            float(value)
        except (TypeError, ValueError):
            raise DataError(
                f"data.label: regression target {value!r} in {row_hint(i, source)} is not a number"
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
            f"data.{split}: multi_label cell {value!r} in {row_hint(row, source)} is neither a list "
            f"nor a '{separator}'-separated string (data.label_separator)"
        )

    sets = [as_set(value, row) for row, value in enumerate(column_values(dataset, LABEL))]
    return dataset.remove_columns(LABEL).add_column(LABEL, sets)


def label_set_vocabulary(train: Dataset, source: str) -> list[str]:
    """Sorted names of every label that occurs in the training label sets (numbers numerically)."""
    names = {name for labels in column_values(train, LABEL) for name in labels}
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
    unknown = sorted({name for labels in column_values(dataset, LABEL) for name in labels} - set(index))
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
