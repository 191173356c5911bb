"""`distributed.strategy: fsdp`: the model sharded over the processes with FSDP2, on GPUs and CPUs alike.

Each process holds 1/N of every parameter (a `DTensor` shard) and gathers a layer's whole weights
only while it computes with them. finetune shards the model itself, one FSDP unit per transformer
layer (the classes the model names in `_no_split_modules`, as Accelerate's TRANSFORMER_BASED_WRAP
does) and the whole model last, before the Trainer sees it; Accelerate then finds an FSDP module and
leaves it as it is. Two reasons: Accelerate applies FSDP only to GPU processes (CPU processes would
quietly train DDP replicas), and its FSDP2 preparation shards the input embeddings a second time
when they sit inside a unit (BERT's `BertEmbeddings`), which fails (accelerate 1.16).

Whole weights are needed where a person or a file sees them: `full_state_dict` gathers them (every
process takes part), `load_weights` puts whole or sharded weights back.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from finetune.distributed.processes import process_count
from finetune.recipe.distributed import DistributedSection, FsdpOptions

if TYPE_CHECKING:
    import torch
    from torch import nn


def shards_model(section: DistributedSection) -> bool:
    """Whether this run shards its model: strategy fsdp under several processes (one process keeps it whole)."""
    return section.strategy == "fsdp" and process_count() > 1


def sharded_units(model: nn.Module) -> list[nn.Module]:
    """The submodules that become FSDP units: those of the classes in the model's `_no_split_modules`,
    bottom up (a unit nested in another is sharded first)."""
    names = set(getattr(model, "_no_split_modules", None) or ())
    return [m for m in reversed(list(model.modules())) if type(m).__name__ in names and m is not model]


def sharding_note(section: DistributedSection, model: nn.Module) -> list[str]:
    """What `explain` says of a sharded recipe: how the model will be cut (nothing for ddp/deepspeed)."""
    if section.strategy != "fsdp":
        return []
    counts = Counter(type(unit).__name__ for unit in sharded_units(model))
    units = ", ".join(f"{name} x{count}" for name, count in sorted(counts.items())) or "none"
    return [
        f"distributed.strategy fsdp: under N processes each holds 1/N of every parameter, in FSDP units "
        f"{units} and the rest of the model; the learning rates, frozen and re-initialised blocks above "
        f"apply unchanged"
    ]


def shard_model(model: nn.Module, options: FsdpOptions) -> str:
    """Shard `model` in place with FSDP2 (`fully_shard` on each unit, then on the model); what it did."""
    from torch.distributed.fsdp import CPUOffloadPolicy, fully_shard

    if options.activation_checkpointing:  # before sharding: the checkpoint wrappers become part of the units
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    kwargs: dict[str, Any] = {"reshard_after_forward": options.sharding == "full_shard"}
    if options.offload_parameters:
        kwargs["offload_policy"] = CPUOffloadPolicy()
    units = sharded_units(model)
    for unit in units:
        fully_shard(unit, **kwargs)
    fully_shard(model, **kwargs)
    kinds = sorted({type(u).__name__ for u in units})
    return (
        f"fsdp: model sharded over {process_count()} processes ({options.sharding}; "
        f"{len(units)} units: {', '.join(kinds) or 'the whole model'}"
        + (", parameters offloaded to CPU memory" if options.offload_parameters else "")
        + (", activation checkpointing" if options.activation_checkpointing else "")
        + ")"
    )


def is_sharded(model: nn.Module) -> bool:
    """Whether `model`'s parameters are FSDP2 shards (DTensors)."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole weights in CPU memory: on the main process of a sharded model (a collective: every
    process calls it; the others get an empty dict), on every process otherwise."""
    if not is_sharded(model):
        return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.clone() for k, v in state.items()}  # on CPU processes they may alias FSDP's buffers


def gathered(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A snapshot of sharded weights made whole (a collective: every process calls it, same order)."""
    from torch.distributed.tensor import DTensor

    return {k: v.full_tensor().cpu() if isinstance(v, DTensor) else v for k, v in state.items()}


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the weights as this process holds them (its shards when sharded), in CPU memory."""
    if not is_sharded(model):
        return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(cpu_offload=True))
    return {k: v.clone() for k, v in state.items()}  # cpu_offload may alias CPU-resident shards


def load_weights(model: nn.Module, state: dict[str, Any]) -> None:
    """Put `state` (a `snapshot`, or whole weights read from a file) into `model`, sharded or not."""
    if not is_sharded(model):
        model.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
    from torch.distributed.tensor import DTensor

    whole = not any(isinstance(v, DTensor) for v in state.values())
    set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=whole))
