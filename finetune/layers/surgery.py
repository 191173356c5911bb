"""A recipe's layer sections applied to a model: `reinit:`, then `freeze:`, then the gradual-unfreezing callback.

Training (`training/run.py`) and `finetune explain` both call `apply_layer_sections`, so what explain
shows is what training does.
"""

from __future__ import annotations

from typing import Any

from finetune.layers.freezing import FreezeSummary, apply_freeze
from finetune.recipe import Recipe


def apply_layer_sections(model: Any, recipe: Recipe) -> FreezeSummary:
    """Apply `reinit:` and `freeze:`, and make the gradual-unfreezing callback when the recipe has one.

    Models of unknown architecture are fine unless a rule needs their blocks (regexes work for any).
    """
    from finetune.layers.freezing import needs_anatomy
    from finetune.layers.reinit import reinitialize
    from finetune.model.anatomy import known_anatomy, model_anatomy

    layered = needs_anatomy(recipe.freeze) or recipe.reinit.is_active() or recipe.layer_lr.is_active()
    anatomy = model_anatomy(model) if layered else known_anatomy(model)
    notes: list[str] = []
    if recipe.reinit.is_active():
        blocks = reinitialize(model, recipe.reinit, anatomy, recipe.training.seed, notes)
        notes.append(f"re-initialised: {', '.join(blocks)}")
    summary = apply_freeze(model, recipe.freeze, anatomy)
    summary.notes[:0] = notes
    if summary.pending:
        from finetune.layers.unfreezing import GradualUnfreezing

        summary.unfreezing = GradualUnfreezing(
            model, summary.pending, recipe.freeze.gradual, summary.eval_guard
        )
    return summary
