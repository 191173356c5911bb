"""`regularization:` what keeps fine-tuning from over-fitting or diverging."""

from typing import Literal

from pydantic import Field, field_validator, model_validator

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

    clip_grad_value: float | None = Field(None, gt=0)
    """Clip every gradient element to [-value, value] before each optimizer step (after unscaling);
    null turns it off. Use it instead of `clip_grad_norm` (set that to null)."""

    l1: float = Field(0.0, ge=0)
    """L1 penalty lambda * sum |w| over trainable weight matrices (biases and normalisation weights
    excluded); logged as `loss_l1`."""

    l2: float = Field(0.0, ge=0)
    """L2 penalty lambda/2 * sum w^2 over trainable weight matrices, added to the loss (unlike
    `optimizer.weight_decay`, it goes through the optimizer's adaptive scaling); logged as `loss_l2`."""

    l2_sp: float = Field(0.0, ge=0)
    """L2-SP (Li et al., 2018): alpha/2 * sum (w - w0)^2 over the trainable pretrained parameters,
    w0 their values before training: pulls towards the pretrained model, not towards 0. The new head
    and the layers `reinit:` re-initialises are not anchored. Keeps one copy of the pretrained
    weights; logged as `loss_l2_sp`."""

    rdrop: float = Field(0.0, ge=0)
    """R-Drop (Liang et al., 2021): every batch goes through the model twice (different dropout), and
    alpha x the mean of the two directions of the KL divergence between the two predictions,
    (KL(p, q) + KL(q, p)) / 2 (the squared difference for regression), summed over the batch's
    examples, is added; the task loss is the mean over both passes. This is the paper's alpha (its
    code sums the KL over the batch while the task loss is a mean; it used 0.1 to 1 on GLUE), so a
    value's strength grows with the batch size. About 2x the compute per step; logged as `loss_rdrop`. Needs dropout
    in the model; cannot be combined with `mixout` (both passes would share one Mixout draw)."""

    mixout: float = Field(0.0, ge=0, lt=1)
    """Mixout (Lee et al., 2020): in training, each weight of the pretrained linear layers is swapped
    for its pretrained value with this probability (rescaled so the expectation is unchanged). The new
    head and the re-initialised layers are left alone. Typical 0.1-0.9, often with hidden dropout
    set to 0."""

    swa_start: float | None = Field(None, ge=0, lt=1)
    """Stochastic weight averaging (Izmailov et al., 2018) of the last part of the run: from this share
    of the planned steps on, the weights are snapshotted every `swa_every`, and at the end the model
    becomes their mean (evaluated and saved in place of the best checkpoint). null turns it off."""

    swa_every: Literal["epoch"] | int = "epoch"
    """When SWA snapshots the weights: at the end of every epoch, or every N optimizer steps."""

    word_deletion: float = Field(0.0, ge=0, lt=1)
    """Text augmentation (Wei & Zou, 2019): each word of a training text is dropped with this
    probability (a text keeps at least one word). Training data only, new draws every epoch, seeded."""

    word_swap: float = Field(0.0, ge=0, le=1)
    """Text augmentation: each word of a training text trades places with another random word of the
    same text with this probability. Training data only, new draws every epoch, seeded."""

    @field_validator("swa_every")
    @classmethod
    def _positive_steps(cls, every: str | int) -> str | int:
        if isinstance(every, int) and every <= 0:
            raise ValueError(f"must be `epoch` or a positive number of steps, got {every}")
        return every

    @model_validator(mode="after")
    def _consistent(self) -> "RegularizationSection":
        problems = []
        if self.clip_grad_value is not None and self.clip_grad_norm is not None:
            problems.append(
                "give `clip_grad_value` or `clip_grad_norm`, not both (set clip_grad_norm to null: "
                "base.yaml sets it to 1.0)"
            )
        if self.rdrop > 0 and self.mixout > 0:
            # R-Drop stacks the two passes into one batch, and Mixout draws one weight mask per
            # forward: both passes would share it, so R-Drop would compare a pass with (nearly) itself.
            problems.append(
                "`rdrop` cannot be combined with `mixout`: R-Drop runs both passes as one stacked batch, "
                "and Mixout draws one weight mask per forward pass, so both passes would share it and "
                "their divergence would measure only dropout (exactly 0 without dropout); set rdrop "
                "or mixout to 0"
            )
        if self.swa_every != "epoch" and self.swa_start is None:
            problems.append("`swa_every` needs `swa_start` (when averaging begins); set both or neither")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def augments_text(self) -> bool:
        return self.word_deletion > 0 or self.word_swap > 0
