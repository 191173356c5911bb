"""Optimizer: parameter groups from the trainable parameters, then the optimizer of the recipe.

Groups are built from `requires_grad` parameters by identity and checked to be disjoint and to
cover every trainable parameter exactly once: frozen parameters are never in the optimizer (save
those gradual unfreezing will release, which wait in their own groups). Per-block learning rates
(`layer_lr:`) make one pair of groups per block; each group keeps `names` and `block` for logs.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from finetune.layers.freezing import resolve_layer_indices
from finetune.model.anatomy import Anatomy, model_anatomy
from finetune.recipe.layer_lr import LayerLRSection
from finetune.recipe.optimizer import OptimizerSection

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


def block_learning_rates(anatomy: Anatomy, base_lr: float, layer_lr: LayerLRSection) -> dict[str, float]:
    """Peak LR per anatomy block: layer-wise decay, then the explicit `layer_lr.lrs`.

    With decay d and N layers: head and pooler at the base LR, layer i at base x d^(N-i) (the top
    layer one factor below the head), the embeddings at base x d^(N+1) (Sun et al., 2019; Clark et
    al., 2020). ALBERT's shared layer counts as one layer.
    """
    n = anatomy.num_layers
    decay = layer_lr.decay if layer_lr.decay is not None else 1.0
    lrs = {}
    for block in anatomy.blocks:
        if block in ("head", "pooler"):
            lrs[block] = base_lr
        elif block == "embeddings":
            lrs[block] = base_lr * decay ** (n + 1)
        else:
            lrs[block] = base_lr * decay ** (n - int(block.split(".")[1]))
    for key, lr in layer_lr.lrs.items():
        for block in _blocks_named(key, anatomy):
            lrs[block] = lr
    return lrs


def _blocks_named(key: int | str, anatomy: Anatomy) -> list[str]:
    """The blocks a `layer_lr.lrs` key names (a missing pooler names none)."""
    if key in ("embeddings", "pooler", "head"):
        return [key] if key in anatomy.blocks else []
    indices = resolve_layer_indices([key], anatomy.num_layers, "layer_lr.lrs", anatomy.describe_layers())
    return [f"layer.{i}" for i in indices]


def _split_by_decay(
    named: list[tuple[str, nn.Parameter]], skip: set[str], spec: OptimizerSection, lr: float, block: str
) -> list[dict[str, Any]]:
    """One group with weight decay and one without, for parameters that share a learning rate."""
    groups = []
    for decays in (True, False):
        members = [(n, p) for n, p in named if (n not in skip) == decays]
        if members:
            groups.append(
                {
                    "params": [p for _, p in members],
                    "weight_decay": spec.weight_decay if decays else 0.0,
                    "lr": lr,
                    "names": [n for n, _ in members],
                    "block": block,
                }
            )
    return groups


def param_groups(
    model: nn.Module,
    spec: OptimizerSection,
    layer_lr: LayerLRSection | None = None,
    later: Collection[str] = (),
) -> list[dict[str, Any]]:
    """Parameter groups of the trainable parameters, with and without weight decay.

    Without per-block learning rates: two groups (`block: "all"`). With `layer_lr` (or parameters
    that gradual unfreezing releases later, `later`): two groups per block, head first (so the
    Trainer's logged LR, that of group 0, is the head's), each with its block's LR. Frozen blocks get
    no group; the `later` parameters get theirs from the start (see `finetune.layers.unfreezing`).
    """
    skip = no_decay_parameter_names(model, spec.no_decay)
    later = set(later)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad or n in later]
    if not later and (layer_lr is None or not layer_lr.is_active()):
        groups = _split_by_decay(named, skip, spec, spec.lr, "all")
    else:
        anatomy = model_anatomy(model)
        lrs = block_learning_rates(anatomy, spec.lr, layer_lr or LayerLRSection())
        owner = {name: block for block, names in anatomy.blocks.items() for name in names}
        groups = []
        for block in anatomy.top_down():
            members = [(n, p) for n, p in named if owner[n] == block]
            groups += _split_by_decay(members, skip, spec, lrs[block], block)
    check_groups(model, groups, later)
    return groups


def check_groups(model: nn.Module, groups: list[dict[str, Any]], later: Collection[str] = ()) -> None:
    """Every trainable parameter in exactly one group; no frozen one in any, except those in `later`
    (frozen now, unfrozen by gradual unfreezing during the run)."""
    waiting = {id(p) for n, p in model.named_parameters() if n in set(later)}
    seen: dict[int, int] = {}
    for index, group in enumerate(groups):
        for parameter in group["params"]:
            if id(parameter) in seen:
                raise AssertionError(f"a parameter is in optimizer groups {seen[id(parameter)]} and {index}")
            if not parameter.requires_grad and id(parameter) not in waiting:
                raise AssertionError("a frozen parameter is in an optimizer group")
            seen[id(parameter)] = index
    trainable = {id(p) for p in model.parameters() if p.requires_grad} | waiting
    missing = trainable - set(seen)
    if missing:
        raise AssertionError(f"{len(missing)} trainable parameters are in no optimizer group")


def build_optimizer(groups: list[dict[str, Any]], spec: OptimizerSection) -> torch.optim.Optimizer:
    """The recipe's optimizer over the given groups (their `names`/`block` keys are kept for logs).

    Each group carries its own `lr` and `weight_decay`; the constructor gets the optimizer's own
    settings (betas, eps, momentum, `kwargs`). Where the class has a fused kernel and every parameter
    sits on one CPU or CUDA device it is used, else the foreach (multi-tensor) one.
    """
    from finetune.errors import FinetuneError
    from finetune.recipe.optimizer import BUILTIN_OPTIMIZERS, optimizer_arguments, optimizer_class

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
    # None: the recipe leaves it to the optimizer class's own default
    return {key: value for key, value in settings.items() if key in accepted and value is not None}
