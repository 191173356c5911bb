"""`freeze:` which parts of the pretrained model do not train, and when frozen parts start to.

Selectors name parts of the model: blocks (`embeddings`, encoder layers by index, range or count
from either end, `pooler`, `head`), parameter-name regexes and module classes. Under `freeze:` the
selected parameters are frozen; under `freeze.train_only:` everything *not* selected is frozen.
Both can be given; the frozen set is their union. `freeze.gradual` then unfreezes the trainable
blocks top-down during training (ULMFiT: Howard & Ruder, 2018).
"""

import math
import re
from fractions import Fraction
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .base import Section

_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")
_INT = re.compile(r"^\s*-?\d+\s*$")
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def parse_layer_item(item: int | str) -> list[int]:
    """Expand one layer item: `3` -> [3], `-1` -> [-1], `"0-5"` -> [0, ..., 5], `"7"` -> [7]."""
    if isinstance(item, int):
        return [item]
    if _INT.match(item):
        return [int(item)]
    match = _RANGE.match(item)
    if match is None:
        raise ValueError(f"{item!r} is not a layer index or a range like '0-5'")
    first, last = int(match.group(1)), int(match.group(2))
    if first > last:
        raise ValueError(f"range {item!r} is empty: write it low-high, e.g. '{last}-{first}'")
    return list(range(first, last + 1))


def count_of(value: int | str, num_layers: int) -> int:
    """A `bottom`/`top` value for a model of `num_layers` layers: `3` -> 3, `"50%"` -> half (rounded down)."""
    if isinstance(value, int):
        return value
    match = _PERCENT.match(value)
    if match is None:
        raise ValueError(f"{value!r} is neither a number of layers nor a share like '50%'")
    # exact: in floats 29 / 100 * 100 is 28.999999999999996, which int() would round down to 28
    return math.floor(Fraction(match.group(1)) / 100 * num_layers)


class Selection(Section):
    """Parts of a model, by block, by parameter-name regex and by module class."""

    embeddings: bool = False
    """The embeddings (word, position, token-type and their LayerNorm; also the embedding projection of
    ELECTRA/ALBERT and the relative-position embeddings of DeBERTa/MPNet)."""

    layers: list[int | str] = []
    """Encoder layers by index (0 = closest to the input; negative counts from the top) and ranges like
    `"0-5"`. An index the loaded model does not have is an error that names its layer count."""

    bottom: int | str | None = None
    """The N encoder layers closest to the input (layers 0..N-1), or a share like `"50%"` (rounded
    down). 0 selects none; more layers than the model has is an error."""

    top: int | str | None = None
    """The N encoder layers closest to the head, or a share like `"25%"` (rounded down)."""

    pooler: bool = False
    """The pooler (BERT's and ALBERT's dense layer over [CLS], DeBERTa's ContextPooler, ModernBERT's
    prediction head). Models without one (RoBERTa, ELECTRA, DistilBERT, MPNet) have nothing to select:
    a note says so."""

    head: bool = False
    """The task head: everything the task adds on top of the encoder (the classifier, DistilBERT's
    pre_classifier, the classification dense layer of RoBERTa, ELECTRA and MPNet)."""

    patterns: list[str] = []
    """Regular expressions searched in parameter names (e.g. `attention\\.self\\.(query|key)`, `bias$`).
    Each must match at least one parameter, or it is an error that lists the nearest names. Works for
    any architecture, including ones finetune does not know the layers of."""

    modules: list[str] = []
    """Module class names (e.g. `LayerNorm`, `Embedding`, `BertSelfAttention`): every parameter of every
    module of that class. Each must match at least one parameter."""

    @field_validator("layers")
    @classmethod
    def _valid_items(cls, items: list[int | str]) -> list[int | str]:
        for item in items:
            parse_layer_item(item)
        return items

    @field_validator("bottom", "top")
    @classmethod
    def _valid_count(cls, value: int | str | None) -> int | str | None:
        if value is None:
            return value
        if isinstance(value, int) and value < 0:
            raise ValueError(f"must be a number of layers >= 0 or a share like '50%', got {value}")
        if isinstance(value, str):
            count_of(value, 100)
            if float(_PERCENT.match(value).group(1)) > 100:
                raise ValueError(f"a share of layers is at most 100%, got {value!r}")
        return value

    @field_validator("patterns")
    @classmethod
    def _valid_patterns(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"{pattern!r} is not a regular expression: {error}") from None
        return patterns

    def needs_anatomy(self) -> bool:
        """Whether this selection names blocks only a known architecture has (embeddings, layers, pooler)."""
        return bool(
            self.embeddings or self.layers or self.bottom is not None or self.top is not None or self.pooler
        )


class TrainOnlySection(Selection):
    """`freeze.train_only:` what stays trainable; everything else is frozen."""

    head: bool = True
    """The task head stays trainable (default): it is new, randomly initialised weights, so freezing
    it is rarely wanted. Set false to freeze it too."""


class GradualSection(Section):
    """`freeze.gradual:` unfreeze the trainable blocks top-down during training (ULMFiT)."""

    every: float = Field(1, gt=0)
    """Unfreeze the next block(s) every this many `unit`s (epochs may be fractional: 0.5 = twice an epoch)."""

    unit: Literal["epoch", "step"] = "epoch"
    """`epoch` or `step` (optimizer steps)."""

    blocks: int = Field(1, ge=1)
    """How many blocks unfreeze at each stage."""

    start_layers: int = Field(0, ge=0)
    """Encoder layers (from the top) that train from the first step, besides the head and pooler, which
    always do. 0 = ULMFiT: only the head trains at first."""

    @model_validator(mode="after")
    def _whole_steps(self) -> "GradualSection":
        if self.unit == "step" and self.every != int(self.every):
            raise ValueError(f"every: {self.every} steps; a number of steps is a whole number")
        return self


class FreezeSection(Selection):
    """`freeze:` which parts of the pretrained model do not train."""

    train_only: TrainOnlySection | None = None
    """Freeze everything except what this selects (the head stays trainable unless `head: false`).
    E.g. `train_only: {modules: [LayerNorm]}` trains only the LayerNorms and the head."""

    gradual: GradualSection | None = None
    """Gradual unfreezing (ULMFiT, Howard & Ruder 2018): start with the head (and `start_layers` top
    layers) trainable, then unfreeze one block after another, top-down, every `every` `unit`s. Blocks
    frozen by the rest of `freeze:` never unfreeze: they are the floor."""

    eval_mode: bool = False
    """Keep fully frozen blocks in eval mode while training: no dropout in them. Default false, as when
    freezing by hand: freezing changes only which weights learn, and the frozen layers' dropout keeps
    regularising the trainable layers above them. True makes frozen features deterministic (and a little
    faster); a block leaves eval mode when gradual unfreezing reaches it."""

    allow_all_frozen: bool = False
    """Allow a recipe that freezes every parameter (e.g. to only evaluate). Otherwise that is an error."""
