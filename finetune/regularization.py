"""Regularization: dropout overrides, label smoothing and the task loss they shape.

Each technique is a small function that takes the `regularization:` section (and a model or the
logits) and knows nothing of the others or of the trainer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import FinetuneError
from .recipe.regularization import RegularizationSection

if TYPE_CHECKING:
    import torch

# Architectures name their dropout settings differently; an override sets every name present.
DROPOUT_CONFIG_KEYS: dict[str, tuple[str, ...]] = {
    "hidden_dropout": (
        "hidden_dropout_prob",
        "dropout",
        "hidden_dropout",
        "mlp_dropout",
        "embedding_dropout",
    ),
    "attention_dropout": ("attention_probs_dropout_prob", "attention_dropout"),
    "classifier_dropout": (
        "classifier_dropout",
        "classifier_dropout_prob",
        "seq_classif_dropout",
        "pooler_dropout",
        "cls_dropout",
    ),
}


def dropout_overrides(config: Any, spec: RegularizationSection) -> dict[str, float]:
    """Config attributes to set for the recipe's dropout overrides (Srivastava et al., 2014)."""
    overrides: dict[str, float] = {}
    for key, names in DROPOUT_CONFIG_KEYS.items():
        value = getattr(spec, key)
        if value is None:
            continue
        present = [name for name in names if hasattr(config, name)]
        if not present:
            raise FinetuneError(
                f"regularization.{key}: the '{config.model_type}' config has no dropout setting of "
                f"this kind (looked for {', '.join(names)}); remove the key"
            )
        overrides.update(dict.fromkeys(present, value))
    return overrides


def task_loss(
    logits: torch.Tensor, labels: torch.Tensor, task: str, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Cross-entropy (with label smoothing, Szegedy et al., 2016) or mean squared error."""
    import torch.nn.functional as F

    if task == "regression":
        return F.mse_loss(logits.squeeze(-1).float(), labels.float())
    return F.cross_entropy(logits.float(), labels.long(), label_smoothing=label_smoothing)


def loss_terms(
    spec: RegularizationSection, task: str, model: torch.nn.Module, inputs: dict[str, Any], outputs: Any
) -> dict[str, torch.Tensor]:
    """The named terms of the training loss (their sum backpropagates; each is logged).

    `task` is the data loss; regularizers that add a penalty add a term of their own.
    """
    smoothing = spec.label_smoothing if model.training else 0.0
    return {"task": task_loss(outputs.logits, inputs["labels"], task, smoothing)}
