"""Freezing: turn a `freeze:` recipe section into `requires_grad` flags on a model.

Every rule must match something, and a recipe that freezes every parameter is an error unless it
says so (`freeze.allow_all_frozen`): the silent failure modes of hand-written freezing code (a
regex that matches nothing, an index past the last layer) are what a recipe framework exists to
prevent. The frozen set is the union of what `freeze:` selects and, with `freeze.train_only`,
everything that section does not select. Gradual unfreezing (`freeze.gradual`) starts with more
blocks frozen; `finetune.layers.unfreezing` releases them during training.

Frozen embeddings and gradient checkpointing: with torch's re-entrant checkpointing, a
checkpointed layer whose *inputs* do not require grad returns outputs that do not either, so no
gradient reaches the trainable layers above frozen embeddings. `training.gradient_checkpointing`
uses the non-reentrant implementation, which has no such limitation (tests/layers/test_freezing.py).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from finetune.errors import FinetuneError
from finetune.model.anatomy import Anatomy, unknown_architecture_error
from finetune.recipe.freeze import FreezeSection, Selection, count_of, parse_layer_item

if TYPE_CHECKING:
    from torch import nn


class EvalModeGuard:
    """Keeps some blocks in eval mode (no dropout) while the rest of the model trains.

    The Trainer calls `model.train()` before every step, which would switch every submodule back
    to training mode; a forward pre-hook on the whole model puts the guarded blocks back in eval
    mode before each forward pass, so they are in eval mode whenever they run (also inside
    checkpointed recomputation, which then is skipped for them: they store nothing for backward).
    """

    def __init__(self, model: nn.Module, blocks: dict[str, list[nn.Module]]) -> None:
        self.blocks = dict(blocks)
        self.handle = model.register_forward_pre_hook(self._hook)

    def _hook(self, model: nn.Module, args: Any) -> None:
        if model.training:
            for modules in self.blocks.values():
                for module in modules:
                    module.eval()

    def release(self, block: str) -> None:
        """Let `block` follow the model's mode again (at the next `model.train()`)."""
        self.blocks.pop(block, None)

    def remove(self) -> None:
        self.blocks.clear()
        self.handle.remove()


@dataclass
class FreezeSummary:
    """What a freeze spec did: which blocks are frozen, and the trainable count."""

    frozen_blocks: list[str]
    trainable: int
    total: int
    partly_frozen_blocks: list[str] = field(default_factory=list)
    pending: dict[str, list[str]] = field(default_factory=dict)  # gradual: block -> names, top-down
    eventually_trainable: int | None = None
    notes: list[str] = field(default_factory=list)
    eval_guard: EvalModeGuard | None = None
    unfreezing: Any = None  # the GradualUnfreezing callback (set by layers/surgery.apply_layer_sections)

    @property
    def trainable_share(self) -> float:
        return self.trainable / self.total if self.total else 0.0

    def line(self) -> str:
        text = f"trainable {self.trainable:,} / total {self.total:,} ({self.trainable_share:.1%})"
        if self.pending:
            later = self.eventually_trainable or 0
            text += f"; {later:,} ({later / self.total:.1%}) once gradual unfreezing has reached every block"
        return text


def resolve_layer_indices(
    items: list[int | str], num_layers: int, key: str = "freeze.layers", described: str | None = None
) -> list[int]:
    """Expand indices and ranges into sorted non-negative layer indices, checking bounds."""
    indices: set[int] = set()
    for item in items:
        for index in parse_layer_item(item):
            resolved = index + num_layers if index < 0 else index
            if not 0 <= resolved < num_layers:
                raise FinetuneError(
                    f"{key}: layer {index} (from {item!r}) does not exist: the model has "
                    f"{described or f'{num_layers} encoder layers'}, indices 0..{num_layers - 1} "
                    f"(or -1..-{num_layers})"
                )
            indices.add(resolved)
    return sorted(indices)


def layer_count(value: int | str, anatomy: Anatomy, key: str) -> int:
    """A `bottom`/`top` count for this model, checked against its layer count."""
    count = count_of(value, anatomy.num_layers)
    if count > anatomy.num_layers:
        raise FinetuneError(
            f"{key}: {count} layers, but the model has {anatomy.describe_layers()}; "
            f"use at most {anatomy.num_layers} (or a share like '50%')"
        )
    return count


def selected_layers(selection: Selection, anatomy: Anatomy, key: str) -> list[int]:
    """Layer indices a selection names by index, range, `bottom` and `top`."""
    described = anatomy.describe_layers()
    indices = set(resolve_layer_indices(selection.layers, anatomy.num_layers, f"{key}.layers", described))
    if selection.bottom is not None:
        indices |= set(range(layer_count(selection.bottom, anatomy, f"{key}.bottom")))
    if selection.top is not None:
        count = layer_count(selection.top, anatomy, f"{key}.top")
        indices |= set(range(anatomy.num_layers - count, anatomy.num_layers))
    return sorted(indices)


def selected_blocks(selection: Selection, anatomy: Anatomy, key: str, notes: list[str]) -> list[str]:
    """The anatomy blocks a selection names, bottom-up."""
    blocks = ["embeddings"] if selection.embeddings else []
    blocks += [f"layer.{i}" for i in selected_layers(selection, anatomy, key)]
    if selection.pooler:
        if "pooler" in anatomy.blocks:
            blocks.append("pooler")
        else:
            notes.append(
                f"{key}.pooler: this {anatomy.model_type} model has no pooler; nothing selected there"
            )
    if selection.head:
        blocks.append("head")
    return blocks


def nearest(wanted: str, candidates: list[str], count: int = 5) -> str:
    """`did you mean` text for a pattern or name that matched nothing."""
    close = difflib.get_close_matches(wanted, candidates, n=count, cutoff=0.3) or candidates[:count]
    return ", ".join(close)


def pattern_names(patterns: list[str], names: list[str], key: str) -> set[str]:
    """Parameter names any regex matches (`re.search`); a regex that matches nothing is an error."""
    matched: set[str] = set()
    for pattern in patterns:
        hits = {n for n in names if re.search(pattern, n)}
        if not hits:
            raise FinetuneError(
                f"{key}.patterns: {pattern!r} matches no parameter of this model; nearest parameter "
                f"names: {nearest(pattern, names)}"
            )
        matched |= hits
    return matched


def module_names(model: nn.Module, classes: list[str], key: str) -> set[str]:
    """Names of every parameter of every module of the given classes; a class with none is an error."""
    matched: set[str] = set()
    present = sorted({type(m).__name__ for m in model.modules() if any(True for _ in m.parameters())})
    for wanted in classes:
        hits = {
            f"{prefix}.{name}" if prefix else name
            for prefix, module in model.named_modules()
            if type(module).__name__ == wanted
            for name, _ in module.named_parameters()
        }
        if not hits:
            raise FinetuneError(
                f"{key}.modules: no module of class {wanted!r} with parameters in this model; "
                f"nearest classes: {nearest(wanted, present)}"
            )
        matched |= hits
    return matched


def generic_head_names(model: nn.Module) -> list[str]:
    """The task head of any Hugging Face model: what is not part of its base model."""
    prefix = getattr(model, "base_model_prefix", "") + "."
    return [n for n, _ in model.named_parameters() if not n.startswith(prefix)]


def selected_names(
    model: nn.Module, selection: Selection, anatomy: Anatomy | None, key: str, notes: list[str]
) -> set[str]:
    """Every parameter name a selection selects, checking that each rule matches something."""
    names = [n for n, _ in model.named_parameters()]
    chosen = pattern_names(selection.patterns, names, key) | module_names(model, selection.modules, key)
    if anatomy is not None:
        for block in selected_blocks(selection, anatomy, key, notes):
            chosen |= set(anatomy.blocks[block])
    elif selection.needs_anatomy():
        raise unknown_architecture_error(getattr(getattr(model, "config", None), "model_type", None))
    elif selection.head:
        chosen |= set(generic_head_names(model))
    return chosen


def needs_anatomy(spec: FreezeSection) -> bool:
    """Whether applying `spec` needs to know the model's blocks (anything but regexes, classes, head)."""
    train_only = spec.train_only is not None and spec.train_only.needs_anatomy()
    return spec.needs_anatomy() or train_only or spec.gradual is not None or spec.eval_mode


def frozen_names(
    model: nn.Module, spec: FreezeSection, anatomy: Anatomy | None, notes: list[str]
) -> set[str]:
    """Names of the parameters the static part of `spec` freezes (gradual unfreezing aside)."""
    frozen = selected_names(model, spec, anatomy, "freeze", notes)
    if spec.train_only is not None:
        keep = selected_names(model, spec.train_only, anatomy, "freeze.train_only", notes)
        frozen |= {n for n, _ in model.named_parameters() if n not in keep}
    return frozen


def gradual_plan(
    spec: FreezeSection, anatomy: Anatomy, frozen: set[str], notes: list[str]
) -> dict[str, list[str]]:
    """Blocks that gradual unfreezing releases, top-down, with their (statically trainable) parameters.

    The head and pooler always train; the top `start_layers` layers train from the start; every
    block below with trainable parameters waits for its turn. Blocks the rest of `freeze:` keeps
    frozen are the floor: they never unfreeze.
    """
    gradual = spec.gradual
    below_start = anatomy.num_layers - gradual.start_layers
    order = [f"layer.{i}" for i in reversed(range(max(below_start, 0)))] + ["embeddings"]
    plan = {}
    for block in order:
        names = [n for n in anatomy.blocks[block] if n not in frozen]
        if names:
            plan[block] = names
    if not plan:
        raise FinetuneError(
            "freeze.gradual: no block is left to unfreeze (start_layers "
            f"{gradual.start_layers} of {anatomy.describe_layers()}, and the rest of `freeze:` keeps the "
            "others frozen); lower freeze.gradual.start_layers or remove freeze.gradual"
        )
    return plan


def apply_freeze(model: nn.Module, spec: FreezeSection, anatomy: Anatomy | None = None) -> FreezeSummary:
    """Set `requires_grad` from `spec`: False on frozen (and not yet unfrozen) parameters, True elsewhere."""
    if anatomy is None and needs_anatomy(spec):
        raise unknown_architecture_error(getattr(getattr(model, "config", None), "model_type", None))
    notes: list[str] = []
    frozen = frozen_names(model, spec, anatomy, notes)
    pending = gradual_plan(spec, anatomy, frozen, notes) if spec.gradual is not None else {}
    waiting = {n for names in pending.values() for n in names}
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name not in frozen and name not in waiting)
    summary = summarize_blocks(model, anatomy, notes)
    summary.frozen_blocks = [b for b in summary.frozen_blocks if b not in pending]  # these unfreeze later
    summary.pending = pending
    if pending:
        summary.eventually_trainable = summary.trainable + sum(
            p.numel() for n, p in model.named_parameters() if n in waiting
        )
    if summary.trainable == 0 and not spec.allow_all_frozen:
        raise FinetuneError(
            "freeze: this recipe freezes every parameter, so nothing would train; change the freeze "
            "section, or set freeze.allow_all_frozen: true if that is what you want"
        )
    if spec.eval_mode:
        eval_blocks = summary.frozen_blocks + list(pending)
        summary.eval_guard = EvalModeGuard(model, {b: anatomy.block_modules(b) for b in eval_blocks})
    return summary


def summarize(model: nn.Module, blocks: list[str] | None = None) -> FreezeSummary:
    """Trainable and total parameter counts; `blocks` are recorded as the frozen blocks."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return FreezeSummary(frozen_blocks=list(blocks or []), trainable=trainable, total=total)


def summarize_blocks(model: nn.Module, anatomy: Anatomy | None, notes: list[str]) -> FreezeSummary:
    """`summarize`, with the fully and the partly frozen blocks read from the model's flags."""
    summary = summarize(model)
    summary.notes = notes
    if anatomy is not None:
        parameters = dict(model.named_parameters())
        for block, names in anatomy.blocks.items():
            flags = [parameters[n].requires_grad for n in names]
            if flags and not any(flags):
                summary.frozen_blocks.append(block)
            elif not all(flags):
                summary.partly_frozen_blocks.append(block)
    return summary
