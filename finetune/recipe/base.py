"""The base class of every recipe section."""

from typing import Literal

from pydantic import BaseModel, ConfigDict

AUTO = "auto"
Auto = Literal[
    "auto"
]  # a value finetune resolves for the loaded model and data (finetune/training/defaults.py)


class Section(BaseModel):
    """A recipe section: unknown keys are errors, every field documents itself.

    `extra="forbid"` is the point: a misspelt key must never silently fall back to its default.
    Field descriptions are the recipe reference (docs/recipe-reference.md, `finetune explain`).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True)
