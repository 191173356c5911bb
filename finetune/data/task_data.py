"""Loading a recipe's data: `load_task_data` (any task -> checked, label-encoded `TaskData`) and `tokenize`.

Everything that can be wrong with the data (a missing file or column, an empty split, a label in
validation that train never had, a non-numeric regression target) is found while loading (here and
in files.py, columns.py, labels.py, splits.py), before the model is loaded or a step is taken, and
reported with the file and column at fault. Token classification has its own loader (tokens.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from finetune.data.columns import canonical_columns, check_empty_texts, declared_class_names
from finetune.data.files import read_file, resolve_path
from finetune.data.hub import load_hub
from finetune.data.labels import (
    encode_labels,
    encode_multi_hot,
    float_targets,
    label_set_vocabulary,
    label_sets,
    label_vocabulary,
)
from finetune.data.splits import TaskData, no_data_error, split_validation
from finetune.data.tokens import load_token_data
from finetune.errors import DataError
from finetune.recipe.data import DataSection

if TYPE_CHECKING:
    from datasets import Dataset


def _check_not_empty(dataset: Dataset, split: str, source: str) -> None:
    if len(dataset) == 0:
        raise DataError(f"data.{split}: {source} has no rows")


def load_task_data(spec: DataSection, task: str, seed: int) -> TaskData:
    """Read, check and label-encode the train and validation splits named by the recipe."""
    if task == "token_classification":  # word lists and tag lists: their own reader
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
