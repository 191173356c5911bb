"""`layer_lr:` a learning rate per block: layer-wise decay or explicit values.

Discriminative fine-tuning (Howard & Ruder, 2018) and layer-wise LR decay (Sun et al., 2019;
Clark et al., 2020): lower layers hold more general features and move less.
"""

from pydantic import Field, field_validator

from .base import Section
from .freeze import parse_layer_item

BLOCK_NAMES = ("embeddings", "pooler", "head")


def check_block_key(key: int | str) -> None:
    """A `layer_lr.lrs` key: `embeddings`, `pooler`, `head`, a layer index or a range."""
    if isinstance(key, str) and key in BLOCK_NAMES:
        return
    try:
        parse_layer_item(key)
    except ValueError:
        raise ValueError(
            f"{key!r} is not a block: use embeddings, pooler, head, a layer index (3, -1) or a range ('0-5')"
        ) from None


class LayerLRSection(Section):
    """`layer_lr:` per-block learning rates (frozen blocks get none)."""

    decay: float | None = Field(None, gt=0, le=1)
    """Layer-wise LR decay factor (typically 0.8-0.95). The head and pooler train at `optimizer.lr`, the
    top encoder layer at lr x decay, layer i of N at lr x decay^(N-i), the embeddings at lr x
    decay^(N+1). null: every block at `optimizer.lr`."""

    lrs: dict[int | str, float] = {}
    """Explicit peak learning rates per block, overriding `optimizer.lr` and `decay` for the blocks
    named: keys `embeddings`, `pooler`, `head`, a layer index (negative counts from the top) or a range
    like `"0-5"`, e.g. `{embeddings: 1e-5, "0-5": 2e-5, head: 1e-4}`. The schedule scales them all."""

    @field_validator("lrs")
    @classmethod
    def _valid_lrs(cls, lrs: dict[int | str, float]) -> dict[int | str, float]:
        for key, lr in lrs.items():
            check_block_key(key)
            if not 0 < lr <= 1:
                raise ValueError(f"the learning rate of {key!r} must be in (0, 1], got {lr}")
        return lrs

    def is_active(self) -> bool:
        return self.decay is not None or bool(self.lrs)
