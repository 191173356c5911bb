"""`distill:` knowledge distillation: the student also learns the outputs of a trained teacher."""

from typing import Literal

from pydantic import Field

from .base import Section


class DistillSection(Section):
    teacher: str | None = None
    """The trained teacher: a run folder (its `model/` is used), a model folder, or a hub id. It must
    have been fine-tuned on this task: same task, and for classes the same label names in the same
    order (checked). Its outputs on every training example are computed once, before the first step
    (eval mode, no dropout) and reused every epoch. Unset: no distillation."""

    alpha: float = Field(0.5, ge=0, le=1)
    """Weight of the distillation term; the task term (the loss against the labels) is weighted
    1 - alpha, so 1 trains on the teacher alone. Training loss only: the validation loss stays the
    task loss. Logged as `loss_distill` and `loss_task` (each already weighted)."""

    temperature: float = Field(2.0, gt=0)
    """Softens both distributions (Hinton et al., 2015): classification adds
    KL(softmax(teacher/T) || softmax(student/T)) * T^2, the T^2 keeping the gradients' scale as T
    changes. multi_label: the per-label Bernoulli KL between sigmoid(teacher/T) and
    sigmoid(student/T), averaged over labels, times T^2 (binary cross-entropy to the teacher's
    softened probabilities, less its constant entropy). Regression: no temperature, the term is the
    mean squared difference from the teacher's output."""

    tokenizer: Literal["same", "own"] = "same"
    """`same`: the teacher must split texts into the student's token ids (checked on the first
    training texts; a different tokenizer usually means the wrong teacher). `own`: the teacher reads
    each training text with its own tokenizer, so it may be another model family (e.g. a RoBERTa
    teacher for a BERT student)."""

    @property
    def enabled(self) -> bool:
        return self.teacher is not None
