"""Mixout (Lee, Cho & Kang, ICLR 2020): dropout towards the pretrained weights instead of towards 0.

In training, each weight of a pretrained linear layer is replaced by its pretrained value with
probability p, and the mix is rescaled so its expectation is the current weight:

    mixout(w) = (M * w + (1 - M) * w0 - p * w0) / (1 - p),   M ~ Bernoulli(1 - p) per element.

`MixoutLinear` is an `nn.Linear` with the same `weight` and `bias` parameters (the same objects, so
optimizer groups, freezing and `state_dict` keys are unchanged) and a non-persistent buffer with w0;
in evaluation (and while frozen) it is a plain linear layer. The new task head is not mixed (it has
no pretrained value).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def mixout(weight: torch.Tensor, anchor: torch.Tensor, p: float) -> torch.Tensor:
    """One Mixout draw of `weight` towards `anchor` (see the module docstring)."""
    keep = torch.empty_like(weight).bernoulli_(1 - p)
    return (keep * weight + (1 - keep) * anchor - p * anchor) / (1 - p)


class MixoutLinear(nn.Linear):
    """`nn.Linear` whose weight is mixed out towards its value at construction while training."""

    def __init__(self, linear: nn.Linear, p: float) -> None:
        nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        self.p = p
        self.register_buffer("anchor", linear.weight.detach().clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # A frozen weight still equals its anchor: mixing it would change nothing but cost time.
        mixing = self.training and self.p > 0 and self.weight.requires_grad
        weight = mixout(self.weight, self.anchor, self.p) if mixing else self.weight
        return F.linear(x, weight, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mixout={self.p}"


def apply_mixout(model: nn.Module, p: float) -> list[str]:
    """Swap every pretrained `nn.Linear` for a `MixoutLinear`; returns the names of the swapped layers.

    Layers whose weight is new (`model.new_parameters`, the task head) are left as they are.
    """
    new = set(getattr(model, "new_parameters", ()))
    swapped = []
    for name, module in list(model.named_modules()):
        if type(module) is not nn.Linear or f"{name}.weight" in new:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, MixoutLinear(module, p))
        swapped.append(name)
    return swapped
