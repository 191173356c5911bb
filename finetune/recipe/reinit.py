"""`reinit:` re-initialise the top encoder layers and/or the pooler before fine-tuning.

Zhang et al., 2021 ("Revisiting Few-sample BERT Fine-tuning"): the top layers of a pretrained
encoder are specialised to the pretraining task; re-initialising them from the model's own
initialisation makes few-sample fine-tuning more stable and often better.
"""

from pydantic import Field

from .base import Section


class ReinitSection(Section):
    """`reinit:` which pretrained blocks start again from random (seeded by `training.seed`)."""

    top: int = Field(0, ge=0)
    """Re-initialise the top N encoder layers with the model's own weight initialisation (0 = none).
    More layers than the model has is an error."""

    pooler: bool = False
    """Re-initialise the pooler (Zhang et al. re-initialise it with the top layers). A model without one
    (RoBERTa, ELECTRA, DistilBERT, MPNet: their head is new anyway) has nothing to re-initialise: a note
    says so."""

    def is_active(self) -> bool:
        return self.top > 0 or self.pooler
