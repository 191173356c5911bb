"""`peft:` parameter-efficient fine-tuning: train small adapters and the task head, not the encoder."""

from typing import Literal

from pydantic import Field, model_validator

from .base import Section


class PeftSection(Section):
    method: Literal["none", "lora", "ia3"] = "none"
    """`none`: train the model's own weights. `lora`: low-rank updates to chosen linear layers
    (Hu et al., 2021). `ia3`: learned scaling of keys, values and feed-forward activations (Liu et
    al., 2022). Either way the pretrained weights stay frozen; the adapters and the task head train."""

    r: int = Field(8, ge=1, le=1024)
    """LoRA only: rank of the update matrices."""

    alpha: float = Field(16, gt=0)
    """LoRA only: the update is scaled by alpha / r."""

    dropout: float = Field(0.1, ge=0, lt=1)
    """LoRA only: dropout on the input of the update matrices."""

    target_modules: list[str] | Literal["all-linear"] | None = None
    """Module-name suffixes that get adapters (e.g. `[query, value]`), or `all-linear`; null uses the
    architecture's default (LoRA: the attention query and value projections; IA3: keys, values and
    the feed-forward output)."""

    feedforward_modules: list[str] | None = None
    """IA3 only: which of `target_modules` are feed-forward layers (their input is scaled, not their
    output); null uses the architecture's default."""

    modules_to_save: list[str] = []
    """Modules trained in full besides the adapters. The task head and any freshly initialised
    module are always trained; list more here (e.g. `[pooler]`)."""

    save: Literal["merged", "adapter"] = "merged"
    """What `<run>/model` holds: `merged` (adapters folded into the weights: a plain Hugging Face
    model that loads anywhere) or `adapter` (the adapter and head weights alone, a few MB; load them
    with `finetune predict` or `finetune.model.peft.load_adapted_model`)."""

    @model_validator(mode="after")
    def _method_keys_agree(self) -> "PeftSection":
        if self.feedforward_modules is not None and self.method != "ia3":
            raise ValueError(
                f"`feedforward_modules` only applies to method `ia3` (method is `{self.method}`)"
            )
        if self.method == "ia3" and self.target_modules == "all-linear":
            raise ValueError(
                "method `ia3` needs explicit `target_modules` (or null for the default), not all-linear"
            )
        if self.feedforward_modules and isinstance(self.target_modules, list):
            missing = sorted(set(self.feedforward_modules) - set(self.target_modules))
            if missing:
                raise ValueError(f"`feedforward_modules` {missing} must also be listed in `target_modules`")
        return self

    @property
    def enabled(self) -> bool:
        return self.method != "none"
