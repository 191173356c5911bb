"""Class weights for imbalanced data (`loss.class_weights`), counted on the training split.

`auto` is resolved once, from the encoded training labels, into a `{label name: weight}` mapping:
the run prints it and writes it into its recipe.yaml, so re-running that file trains with the same
numbers even if the data changes. The loss (regularization/losses.py) takes them as a vector in
label-id order (`weight_vector`).

- classification and token_classification (tags counted per word): `inverse` gives
  w_c = N / (K * n_c), scikit-learn's `balanced`; `effective` gives w_c proportional to
  (1 - beta) / (1 - beta^n_c) (Cui et al., 2019). Both are scaled so that the average weight over
  the training examples, sum_c n_c * w_c / N, is 1: the weighted loss keeps the scale of the
  unweighted one, so the learning rate and gradient clipping keep their meaning.
- multi_label: w_l = negatives / positives of label l, BCE's `pos_weight`: each label's positives
  then weigh as much in total as its negatives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from finetune.errors import RecipeError
from finetune.recipe.loss import LossSection

SIGNIFICANT = 4  # digits kept: the numbers written to recipe.yaml are the ones trained with


def class_counts(task: str, labels: Sequence[Any], num_labels: int) -> np.ndarray:
    """Examples per class (per word for token_classification; positives per label for multi_label)."""
    if task == "multi_label":
        return np.asarray(labels, dtype=np.float64).reshape(-1, num_labels).sum(axis=0)
    if task == "token_classification":
        labels = [tag for tags in labels for tag in tags]
    ids = np.asarray(labels, dtype=np.int64)
    return np.bincount(ids[ids >= 0], minlength=num_labels).astype(np.float64)


def inverse_weights(counts: np.ndarray) -> np.ndarray:
    """N / (K * n_c): the training examples' average weight is 1 (a class with no example counts as one)."""
    counts = np.maximum(counts, 1)
    return counts.sum() / (len(counts) * counts)


def effective_weights(counts: np.ndarray, beta: float) -> np.ndarray:
    """1 / effective number of samples, (1 - beta) / (1 - beta^n_c), scaled to an average of 1 per example."""
    counts = np.maximum(counts, 1)
    raw = (1 - beta) / (1 - beta**counts)
    return raw * counts.sum() / (raw * counts).sum()


def positive_weights(positives: np.ndarray, examples: int) -> np.ndarray:
    """negatives / positives per label (1 for a label every example has: there is nothing to balance)."""
    negatives = examples - positives
    return np.where(negatives > 0, negatives / np.maximum(positives, 1), 1.0)


def auto_weights(
    spec: LossSection, task: str, labels: Sequence[Any], label_names: list[str]
) -> dict[str, float]:
    """`class_weights: auto` for these training labels, as `{label name: weight}`."""
    counts = class_counts(task, labels, len(label_names))
    if task == "multi_label":
        weights = positive_weights(counts, len(labels))
    elif spec.auto_weights == "effective":
        weights = effective_weights(counts, spec.beta)
    else:
        weights = inverse_weights(counts)
    return {name: float(f"{w:.{SIGNIFICANT}g}") for name, w in zip(label_names, weights)}


def describe(task: str, weights: dict[str, float], counts: np.ndarray, how: str) -> str:
    """`loss.class_weights: auto (inverse) -> negative 0.5556 (900 examples), positive 5 (100)`."""
    unit = "positives" if task == "multi_label" else "words" if task == "token_classification" else "examples"
    parts = [
        f"{name} {w:g} ({int(n):,} {unit if n != 1 else unit[:-1]})"
        for (name, w), n in zip(weights.items(), counts)
    ]
    return f"loss.class_weights: auto ({how}) -> " + ", ".join(parts)


def weight_vector(weights: dict[str, float], label_names: list[str] | None) -> list[float]:
    """The mapping in label-id order; labels it leaves out weigh 1, one the data lacks is an error."""
    names = label_names or []
    unknown = [name for name in weights if name not in names]
    if unknown:
        raise RecipeError(
            f"loss.class_weights: {', '.join(repr(n) for n in unknown)} "
            f"{'is not a label' if len(unknown) == 1 else 'are not labels'} of the training data, whose "
            f"labels are {names}; fix the name(s) or remove them"
        )
    return [float(weights.get(name, 1.0)) for name in names]


def resolve_weights(
    spec: LossSection, task: str, labels: Sequence[Any], label_names: list[str] | None
) -> tuple[dict[str, float] | None, str | None]:
    """The recipe's class weights as a checked mapping (None for `none`), and a line to print for `auto`."""
    if spec.class_weights == "none":
        return None, None
    if spec.class_weights != "auto":
        weight_vector(spec.class_weights, label_names)
        return dict(spec.class_weights), None
    if not label_names:
        raise RecipeError(f"loss.class_weights: `auto` needs class labels; a {task} task has none")
    weights = auto_weights(spec, task, labels, label_names)
    how = "negatives / positives" if task == "multi_label" else spec.auto_weights
    return weights, describe(task, weights, class_counts(task, labels, len(label_names)), how)
