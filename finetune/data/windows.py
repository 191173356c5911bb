"""Long documents (`data.long_documents`): texts longer than `max_length` as overlapping windows.

Truncation keeps the first `max_length` tokens and silently drops the rest, which is harmless for
sentences and wrong for documents whose label lies in their end. With `data.long_documents` every
text longer than `max_length` becomes consecutive windows of at most `max_length` tokens that
overlap by `stride` tokens (the fast tokenizer's overflowing tokens), each carrying the index of
its document in a `document` column. Training sees every window as an example with its document's
label; evaluation and prediction aggregate the windows' logits per document (`aggregate`) before
any metric or decision, so metrics count documents, never windows. Sentence pairs window the
second text and repeat the first in every window.

Whatever the option, every split is measured: how many texts were longer than `max_length` and by
how much (`LongTexts`), said once per run and kept in results.json, so truncation is never silent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from finetune.data.columns import column_values
from finetune.data.samplers import LENGTH_COLUMN
from finetune.errors import DataError, RecipeError
from finetune.recipe.data import DataSection

if TYPE_CHECKING:
    from datasets import Dataset

    from finetune.data.splits import TaskData

DOCUMENT = "document"  # window -> index of its document in the split
UNLIMITED = 10**8  # a max_length no text reaches: measures full lengths without the too-long warning


@dataclass
class LongTexts:
    """How many texts of a split were longer than `max_length`, and by how many tokens."""

    split: str
    texts: int
    max_length: int
    over: list[int]  # tokens beyond max_length, one entry per text longer than it
    windows: int | None = None  # rows after windowing (data.long_documents); None: truncated

    def line(self) -> str:
        """`validation: 37 of 872 texts longer than max_length 128 (median 40 tokens cut, max 310)`."""
        if not self.over:
            return f"{self.split}: every one of {self.texts:,} texts fits in max_length {self.max_length}"
        verb = "cut" if self.windows is None else "over"
        head = (
            f"{self.split}: {len(self.over):,} of {self.texts:,} texts longer than max_length "
            f"{self.max_length} (median {int(np.median(self.over))} tokens {verb}, max {max(self.over)})"
        )
        if self.windows is None:
            return head + "; truncated (data.long_documents would window them)"
        return head + f"; windowed: {self.texts:,} texts -> {self.windows:,} windows"

    def summary(self) -> dict[str, Any]:
        """What results.json keeps."""
        return {
            "texts": self.texts,
            "longer_than_max_length": len(self.over),
            "median_tokens_over": int(np.median(self.over)) if self.over else 0,
            "max_tokens_over": max(self.over, default=0),
            "handled": "truncated" if self.windows is None else "windowed",
            "windows": self.windows,
        }


def full_lengths(dataset: Dataset, tokenizer: Any, batch_size: int = 1000) -> list[int]:
    """Token count of every example untruncated, special tokens included (pairs: both texts)."""
    pair = "text_pair" in dataset.column_names
    lengths: list[int] = []
    for start in range(0, len(dataset), batch_size):
        rows = dataset[start : start + batch_size]
        encoded = tokenizer(
            rows["text"], rows["text_pair"] if pair else None, truncation=True, max_length=UNLIMITED
        )
        lengths += [len(ids) for ids in encoded["input_ids"]]
    return lengths


def measure(
    dataset: Dataset, tokenizer: Any, max_length: int, split: str, truncated: Any = None
) -> LongTexts:
    """The texts of `dataset` longer than `max_length` and by how much. Given `truncated` (the same rows
    tokenized with truncation), only the rows that reached `max_length` can be longer: only those are
    tokenized again in full (on SST-2's 67k texts: none, instead of a second pass over all)."""
    if truncated is not None:
        full = column_values(truncated, LENGTH_COLUMN)
        dataset = dataset.select([row for row, n in enumerate(full) if n >= max_length])
    over = [n - max_length for n in full_lengths(dataset, tokenizer) if n > max_length]
    texts = len(dataset) if truncated is None else len(truncated)
    return LongTexts(split=split, texts=texts, max_length=max_length, over=over)


def window_stride(spec: DataSection, max_length: int | None = None) -> int | None:
    """Tokens shared by consecutive windows (`long_documents.stride`, else a quarter of `max_length`);
    None when `long_documents` is off (texts are truncated)."""
    if spec.long_documents is None:
        return None
    max_length = max_length or spec.max_length
    stride = spec.long_documents.stride
    return max_length // 4 if stride is None else stride


def check_room(dataset: Dataset, tokenizer: Any, max_length: int, stride: int, split: str) -> None:
    """Every window must hold more than `stride` new tokens: the tokenizer would otherwise panic (a
    Rust abort, not an exception). Pairs: the first text, repeated in every window, takes room too."""
    pair = "text_pair" in dataset.column_names
    room = max_length - tokenizer.num_special_tokens_to_add(pair=pair)
    if stride >= room:
        raise RecipeError(
            f"data.long_documents.stride: {stride} tokens of overlap leave no room in windows of "
            f"max_length {max_length} ({room} tokens besides the special tokens); set a stride below "
            f"{room} (e.g. {room // 4})"
        )
    if not pair:
        return
    firsts = tokenizer(
        column_values(dataset, "text"), add_special_tokens=False, truncation=True, max_length=UNLIMITED
    )
    lengths = full_lengths(dataset, tokenizer)
    for row, ids in enumerate(firsts["input_ids"]):
        if lengths[row] > max_length and room - len(ids) <= stride:  # to be windowed, and no room
            raise DataError(
                f"data.long_documents ({split}, row {row}): the first text (data.text) has {len(ids)} "
                f"tokens, which leaves no room for windows of the second text in max_length {max_length} "
                f"with stride {stride}; raise data.max_length, lower data.long_documents.stride, or "
                f"shorten the first texts (only the second text is windowed)"
            )


def window(dataset: Dataset, tokenizer: Any, max_length: int, stride: int, split: str = "data") -> Dataset:
    """Each text as windows of at most `max_length` tokens overlapping by `stride`, with the `document`
    it came from, its other columns (labels) copied, and a `length` column; short texts stay one row."""
    if not getattr(tokenizer, "is_fast", False):
        raise DataError(
            f"data.long_documents needs a fast (Rust) tokenizer to cut windows; {type(tokenizer).__name__} "
            "is not one: remove data.long_documents, or use a model with a fast tokenizer"
        )
    check_room(dataset, tokenizer, max_length, stride, split)
    pair = "text_pair" in dataset.column_names
    carried = [c for c in dataset.column_names if c not in ("text", "text_pair")]

    def encode(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        encoded = tokenizer(
            batch["text"],
            batch["text_pair"] if pair else None,
            truncation="only_second" if pair else True,
            max_length=max_length,
            stride=stride,
            return_overflowing_tokens=True,
        )
        source = encoded.pop("overflow_to_sample_mapping")
        rows = {key: list(values) for key, values in encoded.items()}
        rows.update({column: [batch[column][i] for i in source] for column in carried})
        rows[DOCUMENT] = [indices[i] for i in source]
        rows[LENGTH_COLUMN] = [len(ids) for ids in rows["input_ids"]]
        return rows

    return dataset.map(
        encode, batched=True, with_indices=True, remove_columns=dataset.column_names, desc="Windowing"
    )


def encode_texts(
    dataset: Dataset, tokenizer: Any, max_length: int, stride: int | None, split: str = "data"
) -> Dataset:
    """Windows when `stride` is given (long documents), else truncated examples (data.task_data.tokenize)."""
    if stride is None:
        from finetune.data.task_data import tokenize

        return tokenize(dataset, tokenizer, max_length)
    return window(dataset, tokenizer, max_length, stride, split)


def encode_splits(data: TaskData, tokenizer: Any, spec: DataSection) -> tuple[Dataset, Dataset]:
    """Train and validation tokenized as the recipe says (windows or truncation), each measured:
    the report is said once and kept in `data.long_texts` for results.json."""
    from finetune.distributed.processes import say

    stride = window_stride(spec)
    encoded = []
    for split, dataset in (("train", data.train), ("validation", data.validation)):
        rows = encode_texts(dataset, tokenizer, spec.max_length, stride, split)
        report = measure(dataset, tokenizer, spec.max_length, split, rows if stride is None else None)
        report.windows = None if stride is None else len(rows)
        say(report.line())
        data.long_texts[split] = report.summary()
        encoded.append(rows)
    return encoded[0], encoded[1]


def dataset_documents(dataset: Any) -> np.ndarray | None:
    """The `document` of every row (windows), or None for data sets of whole texts."""
    names = getattr(dataset, "column_names", None)
    if not names or DOCUMENT not in names:
        return None
    return np.asarray(column_values(dataset, DOCUMENT), dtype=np.int64)


def aggregate(values: Any, documents: Sequence[int], how: str) -> np.ndarray:
    """Per-document rows from per-window rows, in document order: the `mean` or element-wise `max` of
    a document's windows, or its `first` window (the first in `values`' order)."""
    values = np.asarray(values)
    ids, first, inverse = np.unique(np.asarray(documents), return_index=True, return_inverse=True)
    if how == "first":
        return values[first]
    shape = (len(ids), *values.shape[1:])
    if how == "max":
        result = np.full(shape, -np.inf)
        np.maximum.at(result, inverse, values)
        return result
    if how != "mean":
        raise ValueError(f"unknown aggregation '{how}'")
    sums = np.zeros(shape)
    np.add.at(sums, inverse, values)
    counts = np.bincount(inverse).reshape(-1, *[1] * (values.ndim - 1))
    return sums / counts
