"""Fold a temperature into the saved model: the head's last linear layer divided by T.

The logits of every encoder classifier come out of one `nn.Linear` (BERT, ALBERT, DeBERTa,
DistilBERT, ModernBERT: `classifier`; RoBERTa, ELECTRA, MPNet: `classifier.out_proj`).
Dividing its weight and bias by T gives exactly logits / T, so a plain `from_pretrained` or
`pipeline` returns calibrated probabilities with no finetune code. The layer is found by what it
is, not by name: the last linear layer outside the encoder (`base_model_prefix`) with one output
per label. Under `peft:` the head is a ModulesToSaveWrapper holding the trained copy (what the
forward uses, what merging keeps and what an adapter-only save stores) and the frozen original:
the trained copy is rescaled, so the merged and the adapter-only saves both carry T.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from finetune.errors import FinetuneError

if TYPE_CHECKING:
    from torch import nn

PEFT_COPIES = (".modules_to_save.", ".original_module")  # peft's two copies of a wrapped head


def _wrapper_of(name: str) -> str:
    """The head's own path, with peft's copy suffix removed (`classifier.modules_to_save.default` -> `classifier`)."""
    for marker in PEFT_COPIES:
        if marker in name + ".":
            return name[: (name + ".").index(marker)]
    return name


def _adapted(model: nn.Module, name: str) -> str | None:
    """The layer, or the module above it, that is a peft adapter layer (it has a `base_layer`)."""
    parts = name.split(".")
    paths = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return next((path for path in paths if hasattr(model.get_submodule(path), "base_layer")), None)


def logit_layers(model: nn.Module, num_labels: int) -> list[str]:
    """Names of the linear layer(s) that produce the logits (one; or peft's trained copies of it)."""
    from torch import nn

    encoder = getattr(model, "base_model_prefix", "")
    candidates = [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear)
        and module.out_features == num_labels
        and name.partition(".")[0] != encoder
    ]
    if not candidates:
        raise FinetuneError(
            f"calibration: no linear layer with {num_labels} outputs in the task head of this "
            f"{type(model).__name__}; temperature scaling cannot be folded into it. "
            f"Set calibration.temperature: false"
        )
    head = _wrapper_of(candidates[-1])
    chosen = [name for name in candidates if _wrapper_of(name) == head]
    trained = [name for name in chosen if ".modules_to_save." in name + "."]
    chosen = trained or chosen  # peft's frozen original copy is never used once the trained one exists
    adapted = next((found for name in chosen if (found := _adapted(model, name))), None)
    if adapted is not None:
        raise FinetuneError(
            f"calibration: the head layer {adapted} carries a LoRA adapter (its output is base + B·A·x), "
            f"so dividing its weights cannot divide the logits; leave the head out of "
            f"peft.target_modules or set calibration.temperature: false"
        )
    return chosen


def fold_temperature(model: nn.Module, temperature: float, num_labels: int) -> list[str]:
    """Divide the logit layer's weight and bias by `temperature` in place; the names it changed."""
    import torch

    if not temperature > 0:
        raise FinetuneError(f"calibration: the temperature must be positive (is {temperature})")
    names = logit_layers(model, num_labels)
    with torch.no_grad():
        for name in names:
            layer = model.get_submodule(name)
            layer.weight.div_(temperature)
            if layer.bias is not None:
                layer.bias.div_(temperature)
    return names
