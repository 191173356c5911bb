"""`regularization:` what keeps fine-tuning from over-fitting or diverging."""

from pydantic import Field

from .base import Section


class RegularizationSection(Section):
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    """Label smoothing for classification cross-entropy (Szegedy et al., 2016); 0 turns it off."""

    hidden_dropout: float | None = Field(None, ge=0, lt=1)
    """Override the model's hidden-state dropout; null keeps the pretrained config's value."""

    attention_dropout: float | None = Field(None, ge=0, lt=1)
    """Override the dropout on attention probabilities; null keeps the config's value."""

    classifier_dropout: float | None = Field(None, ge=0, lt=1)
    """Override the dropout before the classification head; null keeps the config's value."""

    clip_grad_norm: float | None = Field(1.0, gt=0)
    """Clip the global gradient norm to this value before each optimizer step; null turns it off."""
