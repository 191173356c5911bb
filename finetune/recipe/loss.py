"""`loss:` how the training loss weighs examples: class weights and focal loss, for imbalanced classes."""

from typing import Literal

from pydantic import Field, field_validator

from .base import Section


class LossSection(Section):
    class_weights: Literal["none", "auto"] | dict[str, float] = "none"
    """Weight of each class in the training loss. `none`: every example counts the same. `auto`:
    computed from the training split by `auto_weights`, printed at the start of the run and written
    into the run's recipe.yaml as a mapping (so re-running that file reproduces the run). A mapping
    `{label name: weight}` sets them by hand; labels it leaves out weigh 1, and a label the
    training data lacks is an error. Classification and token_classification: the loss is
    sum_i w[y_i] * loss_i / N (a plain mean of weighted example losses). multi_label: the weight
    of a label multiplies its positive term (BCE's `pos_weight`); `auto` gives negatives / positives
    of each label. Training loss only: the validation loss stays the unweighted task loss, so
    early stopping on `loss` compares like with like. Not for regression."""

    auto_weights: Literal["inverse", "effective"] = "inverse"
    """How `class_weights: auto` weighs the classes (classification, token_classification).
    `inverse`: inverse class frequency, w_c = N / (K * n_c) (scikit-learn's `balanced`), so the
    average weight over the training examples is 1 and the loss keeps its usual scale; counts
    [90, 10] give [0.556, 5.0]. `effective`: the inverse of the effective number of samples,
    (1 - beta^n_c) / (1 - beta) (Cui et al., 2019), scaled the same way: milder than `inverse`
    for large classes. multi_label always uses negatives / positives per label."""

    beta: float = Field(0.999, gt=0, lt=1)
    """The effective number's beta (`auto_weights: effective`); near 1 it approaches `inverse`,
    near 0 every weight approaches 1."""

    focal_gamma: float = Field(0.0, ge=0)
    """Focal loss (Lin et al., 2017): each example's loss is multiplied by (1 - p)^gamma, p the
    probability the model gives its true class, so easy examples count less; 0 is plain
    cross-entropy, the paper used 2. multi_label: per-label focal binary cross-entropy (positive
    terms by (1 - p)^gamma, negative ones by p^gamma). Combines with `class_weights` (the paper's
    alpha) and label smoothing (the factor multiplies the smoothed loss). Training loss only. Not
    for regression."""

    @field_validator("class_weights", mode="before")
    @classmethod
    def _names_as_text(cls, weights: object) -> object:
        """YAML reads `{0: 5}` with a number key; label names are text (`'0'`)."""
        if isinstance(weights, dict):
            return {str(name): value for name, value in weights.items()}
        return weights

    @field_validator("class_weights")
    @classmethod
    def _positive(cls, weights: str | dict[str, float]) -> str | dict[str, float]:
        if isinstance(weights, dict):
            if not weights:
                raise ValueError("an empty mapping weighs nothing; use `none`, `auto` or {label: weight}")
            bad = [f"{name}: {value:g}" for name, value in weights.items() if not value > 0]
            if bad:
                raise ValueError(f"weights must be positive ({', '.join(bad)})")
        return weights

    @property
    def active(self) -> bool:
        """Whether the training loss differs from the plain task loss."""
        return self.class_weights != "none" or self.focal_gamma > 0
