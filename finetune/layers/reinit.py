"""Re-initialise the top encoder layers and/or the pooler before fine-tuning.

Zhang et al., 2021, "Revisiting Few-sample BERT Fine-tuning": the top layers of a pretrained
encoder are specialised to its pretraining objective and transfer worst; re-initialising them
(and the pooler) from the model's own initialisation makes few-sample fine-tuning more stable and
often better. The new weights come from the model class's `_init_weights` (the same distributions
as pretraining started from), seeded, so a recipe re-initialises identically every time.
"""

from __future__ import annotations

from itertools import chain
from typing import TYPE_CHECKING

from finetune.errors import FinetuneError
from finetune.model.anatomy import Anatomy
from finetune.recipe.reinit import ReinitSection

if TYPE_CHECKING:
    from torch import nn


def reinit_blocks(spec: ReinitSection, anatomy: Anatomy, notes: list[str] | None = None) -> list[str]:
    """The blocks `spec` re-initialises, bottom-up; `notes` receives what could not apply."""
    if spec.top > anatomy.num_layers:
        raise FinetuneError(
            f"reinit.top: {spec.top} layers, but the model has {anatomy.describe_layers()}; "
            f"use at most {anatomy.num_layers}"
        )
    blocks = [f"layer.{i}" for i in range(anatomy.num_layers - spec.top, anatomy.num_layers)]
    if spec.pooler:
        if "pooler" in anatomy.blocks:
            blocks.append("pooler")
        elif notes is not None:
            notes.append(
                f"reinit.pooler: this {anatomy.model_type} model has no pooler; nothing to re-initialise"
            )
    return blocks


def reinitialize(
    model: nn.Module, spec: ReinitSection, anatomy: Anatomy, seed: int, notes: list[str] | None = None
) -> list[str]:
    """Re-initialise the blocks `spec` names with the model's own `_init_weights`; returns them.

    The global RNG is forked, so the re-initialisation is the same for a given seed whatever ran
    before, and what runs after (data shuffling, dropout) is unaffected by it.

    The re-initialised parameters join `model.new_parameters` (the fresh head): they are random now,
    so L2-SP and Mixout must not anchor them to these values, and peft trains them in full.
    """
    import torch

    blocks = reinit_blocks(spec, anatomy, notes)
    reset: set[int] = set()
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for block in blocks:
            for module in anatomy.block_modules(block):
                _reset(model, module)
                reset |= {id(p) for p in module.parameters()}
    names = {name for name, p in model.named_parameters() if id(p) in reset}
    model.new_parameters = sorted({*getattr(model, "new_parameters", ()), *names})
    return blocks


def _reset(model: nn.Module, root: nn.Module) -> None:
    """Run the model's `_init_weights` on every submodule of `root`, clearing transformers' "already
    initialised" marks first (loading sets them, and the init functions skip marked tensors)."""
    for module in root.modules():
        module._is_hf_initialized = False
        for tensor in chain(module.parameters(recurse=False), module.buffers(recurse=False)):
            if getattr(tensor, "_is_hf_initialized", False):
                tensor._is_hf_initialized = False
    for module in root.modules():
        model._init_weights(module)
