"""Cross-validation folds: they partition the rows and keep the label mix, regression folds are
plain shuffled K-fold, and too few examples of a class is a clear error."""

import pytest

from finetune.errors import FinetuneError
from finetune.search.cv_folds import fold_indices


def test_folds_partition_the_rows_and_keep_the_label_mix():
    labels = ["a"] * 60 + ["b"] * 30 + ["c"] * 10  # 60/30/10
    folds = fold_indices(labels, 5, seed=0, stratify=True)
    assert len(folds) == 5
    held = [row for _, rows in folds for row in rows]
    assert sorted(held) == list(range(100))  # every row validates exactly once
    for train, rows in folds:
        assert not set(train) & set(rows)
        assert sorted(train + rows) == list(range(100))
        mix = {label: sum(labels[r] == label for r in rows) for label in "abc"}
        assert mix == {"a": 12, "b": 6, "c": 2}  # the same 60/30/10 in every fold
    assert folds != fold_indices(labels, 5, seed=1, stratify=True)  # the seed reshuffles
    assert folds == fold_indices(labels, 5, seed=0, stratify=True)


def test_regression_folds_are_plain_shuffled_kfold():
    targets = [i / 10 for i in range(23)]
    folds = fold_indices(targets, 4, seed=0, stratify=False)
    assert sorted(len(rows) for _, rows in folds) == [5, 6, 6, 6]
    assert sorted(r for _, rows in folds for r in rows) == list(range(23))


def test_too_few_examples_of_a_class_is_a_clear_error():
    with pytest.raises(
        FinetuneError, match=r"at least 5 training examples of every class.*'b': 3.*--folds 3"
    ):
        fold_indices(["a"] * 20 + ["b"] * 3, 5, seed=0, stratify=True)
    with pytest.raises(FinetuneError, match="at least 2"):
        fold_indices(["a", "b"] * 5, 0, seed=0, stratify=True)
