"""Optimizer: parameter groups from the trainable parameters, then the optimizer of the recipe.

Groups are built from `requires_grad` parameters by identity and checked to be disjoint and to
cover every trainable parameter exactly once: frozen parameters are never in the optimizer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .recipe.optimizer import OptimizerSection

if TYPE_CHECKING:
    import torch
    from torch import nn


def no_decay_parameter_names(model: nn.Module, patterns: list[str]) -> set[str]:
    """Names of parameters that get no weight decay: normalisation layers and name patterns."""
    names: set[str] = set()
    for module_name, module in model.named_modules():
        is_norm = "norm" in type(module).__name__.lower()
        for param_name, _ in module.named_parameters(recurse=False):
            full = f"{module_name}.{param_name}" if module_name else param_name
            if is_norm or any(pattern in full for pattern in patterns):
                names.add(full)
    return names


def param_groups(model: nn.Module, spec: OptimizerSection) -> list[dict[str, Any]]:
    """Two groups of trainable parameters: with and without weight decay."""
    skip = no_decay_parameter_names(model, spec.no_decay)
    decay, no_decay, decay_names, no_decay_names = [], [], [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        if name in skip:
            no_decay.append(parameter)
            no_decay_names.append(name)
        else:
            decay.append(parameter)
            decay_names.append(name)
    groups = [
        {
            "params": decay,
            "weight_decay": spec.weight_decay,
            "lr": spec.lr,
            "names": decay_names,
            "block": "all",
        },
        {"params": no_decay, "weight_decay": 0.0, "lr": spec.lr, "names": no_decay_names, "block": "all"},
    ]
    groups = [g for g in groups if g["params"]]
    check_groups(model, groups)
    return groups


def check_groups(model: nn.Module, groups: list[dict[str, Any]]) -> None:
    """Every trainable parameter in exactly one group, no frozen parameter in any."""
    seen: dict[int, int] = {}
    for index, group in enumerate(groups):
        for parameter in group["params"]:
            if id(parameter) in seen:
                raise AssertionError(f"a parameter is in optimizer groups {seen[id(parameter)]} and {index}")
            if not parameter.requires_grad:
                raise AssertionError("a frozen parameter is in an optimizer group")
            seen[id(parameter)] = index
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    missing = trainable - set(seen)
    if missing:
        raise AssertionError(f"{len(missing)} trainable parameters are in no optimizer group")


def build_optimizer(groups: list[dict[str, Any]], spec: OptimizerSection) -> torch.optim.Optimizer:
    """The recipe's optimizer over the given groups (their `names`/`block` keys are kept for logs)."""
    import torch

    kwargs: dict[str, Any] = {"lr": spec.lr, "betas": spec.betas, "eps": spec.eps}
    # foreach kernels batch the per-parameter updates; fused needs every param on one accelerator.
    devices = {p.device.type for g in groups for p in g["params"]}
    if devices <= {"cuda", "cpu"} and len(devices) == 1:
        kwargs["fused"] = True
    try:
        return torch.optim.AdamW(groups, **kwargs)
    except (RuntimeError, TypeError):  # fused not supported on this device/dtype
        kwargs.pop("fused", None)
        return torch.optim.AdamW(groups, foreach=True, **kwargs)
