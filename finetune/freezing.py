"""Freezing: turn a `freeze:` recipe section into `requires_grad` flags on a model.

Every rule must match something, and a recipe that freezes every parameter is an error: the
silent failure modes of hand-written freezing code (a pattern that matches nothing, an index past
the last layer) are exactly what a recipe framework exists to prevent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .anatomy import Anatomy
from .errors import FinetuneError
from .recipe.freeze import FreezeSection, parse_layer_item

if TYPE_CHECKING:
    from torch import nn


@dataclass
class FreezeSummary:
    """What a freeze spec did: which blocks are frozen, and the trainable count."""

    frozen_blocks: list[str]
    trainable: int
    total: int

    @property
    def trainable_share(self) -> float:
        return self.trainable / self.total if self.total else 0.0

    def line(self) -> str:
        return f"trainable {self.trainable:,} / total {self.total:,} ({self.trainable_share:.1%})"


def resolve_layer_indices(items: list[int | str], num_layers: int) -> list[int]:
    """Expand indices and ranges into sorted non-negative layer indices, checking bounds."""
    indices: set[int] = set()
    for item in items:
        for index in parse_layer_item(item):
            resolved = index + num_layers if index < 0 else index
            if not 0 <= resolved < num_layers:
                raise FinetuneError(
                    f"freeze.layers: layer {index} (from {item!r}) does not exist: the model has "
                    f"{num_layers} encoder layers, indices 0..{num_layers - 1} (or -1..-{num_layers})"
                )
            indices.add(resolved)
    return sorted(indices)


def frozen_blocks(spec: FreezeSection, anatomy: Anatomy) -> list[str]:
    """The anatomy blocks a freeze spec freezes, bottom-up."""
    blocks = ["embeddings"] if spec.embeddings else []
    blocks += [f"layer.{i}" for i in resolve_layer_indices(spec.layers, anatomy.num_layers)]
    return blocks


def apply_freeze(model: nn.Module, spec: FreezeSection, anatomy: Anatomy) -> FreezeSummary:
    """Set `requires_grad=False` on the frozen blocks and True everywhere else."""
    blocks = frozen_blocks(spec, anatomy)
    frozen_names = {name for block in blocks for name in anatomy.blocks[block]}
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name not in frozen_names)
    summary = summarize(model, blocks)
    if summary.trainable == 0:
        raise FinetuneError("freeze: this recipe freezes every parameter; nothing would train")
    return summary


def summarize(model: nn.Module, blocks: list[str]) -> FreezeSummary:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return FreezeSummary(frozen_blocks=blocks, trainable=trainable, total=total)
