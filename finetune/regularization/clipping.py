"""Gradient clipping by value (`regularization.clip_grad_value`); clipping by norm is the Trainer's own.

The Trainer computes the gradient norm of every optimizer step through Accelerate, which unscales
fp16 gradients first, so by `on_pre_optimizer_step` the gradients are the true ones and can be
clamped element-wise (Pascanu et al., 2013 discuss both kinds of clipping).
"""

from __future__ import annotations

import torch
from transformers import TrainerCallback


class ClipGradValue(TrainerCallback):
    """Clamp every gradient element to [-value, value] just before each optimizer step."""

    def __init__(self, value: float) -> None:
        self.value = value

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        torch.nn.utils.clip_grad_value_([p for p in model.parameters() if p.grad is not None], self.value)
