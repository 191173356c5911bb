"""What every task's loader returns (`TaskData`: the train and validation splits) and the steps the
loaders share: holding validation out of train, and the error for a recipe that names no data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from finetune.data.columns import LABEL
from finetune.errors import DataError
from finetune.recipe.data import DataSection

if TYPE_CHECKING:
    from datasets import Dataset


@dataclass
class TaskData:
    """Raw (untokenized) splits with canonical columns: `text`, optional `text_pair`, `labels`."""

    train: Dataset
    validation: Dataset
    task: str
    label_names: list[str] | None  # classification: id -> name; regression: None
    sources: dict[str, str] = field(default_factory=dict)  # split -> file path or hub id
    long_texts: dict[str, dict] = field(default_factory=dict)  # split -> data/windows.py's LongTexts.summary

    @property
    def num_labels(self) -> int:
        return len(self.label_names) if self.label_names is not None else 1

    @property
    def is_pair(self) -> bool:
        return "text_pair" in self.train.column_names


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
