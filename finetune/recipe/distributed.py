"""`distributed:` how several processes share the work: DDP, DeepSpeed ZeRO or FSDP (through Accelerate).

The section changes nothing in a single-process run. Under `finetune launch` (or any launcher that
starts several processes) it selects the data-parallel strategy; `finetune/distributed/launch.py` turns it into
Accelerate's configuration and `training/trainer.py` into the Trainer's arguments.
"""

from typing import Literal

from pydantic import Field, model_validator

from .base import Section


class DdpOptions(Section):
    find_unused_parameters: bool = False
    """Let DDP tolerate parameters that get no gradient in a step (slower: it walks the graph every
    step). Not needed for frozen layers or gradual unfreezing, which finetune handles itself."""

    bucket_cap_mb: int = Field(25, gt=0)
    """Size of DDP's gradient all-reduce buckets in MiB."""


class DeepSpeedOptions(Section):
    stage: Literal[2, 3] = 2
    """ZeRO stage: 2 shards optimizer states and gradients; 3 also shards the parameters."""

    offload_optimizer: bool = False
    """Keep optimizer states in CPU memory (ZeRO-Offload): less GPU memory, slower steps."""

    offload_parameters: bool = False
    """Keep parameters in CPU memory between uses (stage 3 only)."""

    @model_validator(mode="after")
    def _offload_needs_stage_3(self) -> "DeepSpeedOptions":
        if self.offload_parameters and self.stage != 3:
            raise ValueError("offload_parameters needs stage: 3 (stage 2 does not shard parameters)")
        return self


class FsdpOptions(Section):
    sharding: Literal["full_shard", "shard_grad_op"] = "full_shard"
    """What FSDP (version 2) shards: `full_shard` (parameters, gradients and optimizer states;
    ZeRO-3-like) or `shard_grad_op` (parameters stay gathered between forward and backward;
    ZeRO-2-like, faster, more memory)."""

    offload_parameters: bool = False
    """Keep parameters (and their gradients) in CPU memory between uses."""

    activation_checkpointing: bool = False
    """Recompute each wrapped layer's activations in the backward pass: less memory, ~30% more compute."""

    state_dict: Literal["full", "sharded"] = "full"
    """What a checkpoint holds besides the training state it resumes from (always one shard per
    process, torch.distributed.checkpoint): `full` also writes the whole model, gathered on the main
    process (a folder `from_pretrained` loads; needs the memory); `sharded` writes only the shards
    (faster for large models). The run's final `model/` is always whole."""


class DistributedSection(Section):
    strategy: Literal["ddp", "deepspeed", "fsdp"] = "ddp"
    """`ddp`: every process holds the whole model (DistributedDataParallel). `deepspeed`: ZeRO
    stage 2/3 (needs the `deepspeed` package). `fsdp`: PyTorch Fully Sharded Data Parallel."""

    ddp: DdpOptions = Field(default_factory=DdpOptions)
    """Options of `strategy: ddp`."""

    deepspeed: DeepSpeedOptions | None = None
    """Options of `strategy: deepspeed` (defaults: stage 2, no offload)."""

    fsdp: FsdpOptions | None = None
    """Options of `strategy: fsdp` (defaults: full_shard, no offload, full state dict)."""

    timeout_minutes: int = Field(30, gt=0)
    """How long a process waits for the others (e.g. while the main process writes a checkpoint)."""

    @model_validator(mode="after")
    def _options_match_strategy(self) -> "DistributedSection":
        for name in ("deepspeed", "fsdp"):
            if getattr(self, name) is not None and self.strategy != name:
                raise ValueError(
                    f"`{name}` options are set but strategy is `{self.strategy}`; "
                    f"set distributed.strategy: {name} or remove distributed.{name}"
                )
        return self

    @property
    def deepspeed_options(self) -> DeepSpeedOptions:
        return self.deepspeed or DeepSpeedOptions()

    @property
    def fsdp_options(self) -> FsdpOptions:
        return self.fsdp or FsdpOptions()
