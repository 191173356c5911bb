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
    """The recipe's optimizer over the given groups (their `names`/`block` keys are kept for logs).

    Each group carries its own `lr` and `weight_decay`; the constructor gets the optimizer's own
    settings (betas, eps, momentum, `kwargs`). Where the class has a fused kernel and every parameter
    sits on one CPU or CUDA device it is used, else the foreach (multi-tensor) one.
    """
    from .errors import FinetuneError
    from .recipe.optimizer import BUILTIN_OPTIMIZERS, optimizer_arguments, optimizer_class

    cls = optimizer_class(spec.name)
    accepted, _ = optimizer_arguments(cls)
    kwargs = {**optimizer_settings(spec, accepted), **spec.kwargs}
    devices = {p.device.type for g in groups for p in g["params"]}
    wants_fused = "fused" in accepted and devices <= {"cuda", "cpu"} and len(devices) == 1
    if wants_fused and "fused" not in spec.kwargs and "foreach" not in spec.kwargs:
        try:
            return cls(groups, **kwargs, fused=True)
        except (RuntimeError, TypeError, ValueError):  # no fused kernel for this device/dtype
            pass
    if "foreach" in accepted and "foreach" not in spec.kwargs and "fused" not in spec.kwargs:
        kwargs["foreach"] = True
    try:
        return cls(groups, **kwargs)
    except (TypeError, ValueError) as error:
        where = "optimizer.kwargs" if spec.kwargs else "optimizer"
        name = BUILTIN_OPTIMIZERS.get(spec.name, spec.name)
        raise FinetuneError(f"{where}: {name} rejected its settings {kwargs}: {error}") from None


def optimizer_settings(spec: OptimizerSection, accepted: set[str]) -> dict[str, Any]:
    """Constructor arguments from the recipe keys, for those the optimizer class takes."""
    if spec.name == "adafactor":
        # The LR comes from our schedule, without Adafactor's relative-step and parameter-scale
        # tricks: the setting transformers documents for fine-tuning with Adafactor.
        return {"lr": spec.lr, "scale_parameter": False, "relative_step": False, "warmup_init": False}
    momentum = spec.momentum if spec.momentum is not None else (0.9 if spec.name == "sgd" else 0.0)
    settings = {
        "lr": spec.lr,
        "betas": spec.betas,
        "eps": spec.eps,
        "momentum": momentum,
        "nesterov": spec.nesterov,
    }
    return {key: value for key, value in settings.items() if key in accepted}
