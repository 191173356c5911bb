"""Running as one of several processes: who writes, sharing decisions, keeping the replicas identical.

A launcher (`finetune launch`, torchrun, srun, accelerate launch) starts one `finetune train` per
device; each process trains a replica of the model on its share of every batch. Only the main
process writes the run folder; decisions every process must share (the run folder, whether to stop)
are made once and broadcast or agreed on. Nothing here does anything in a single-process run.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from transformers import TrainerCallback

from finetune.errors import FinetuneError
from finetune.recipe.distributed import DeepSpeedOptions, DistributedSection, FsdpOptions

if TYPE_CHECKING:
    import torch
    from torch import nn

T = TypeVar("T")


def process_count() -> int:
    """Processes in this run, as the launcher set them (1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Whether this process writes the run folder (global rank 0, or no launcher)."""
    return int(os.environ.get("RANK", "0")) == 0


def _process_group(cpu: bool, timeout_minutes: int) -> Any:
    """torch.distributed, initialised through Accelerate (gloo on CPU, nccl on GPU) if not already."""
    import torch.distributed as dist
    from accelerate import PartialState

    if not dist.is_initialized():
        PartialState(cpu=cpu, timeout=timedelta(minutes=timeout_minutes))
    return dist


def share_from_main(make: Callable[[], T], cpu: bool, timeout_minutes: int = 30) -> T:
    """`make()` on the main process, its result on every process (e.g. the run folder it created)."""
    if process_count() == 1:
        return make()
    dist = _process_group(cpu, timeout_minutes)
    box = [make() if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def any_process(flags: list[bool]) -> list[bool]:
    """Element-wise OR of `flags` over all processes, so every process takes the same decision."""
    import torch
    import torch.distributed as dist

    if process_count() == 1 or not dist.is_initialized():
        return flags
    device = _collective_device()
    tensor = torch.tensor([float(f) for f in flags], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return [bool(v) for v in tensor.tolist()]


def _collective_device() -> torch.device:
    import torch
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def weights_fingerprint(model: nn.Module) -> str:
    """A short hash of every parameter's bytes: equal on two processes iff their weights are equal."""
    digest = hashlib.sha256()
    for name, parameter in sorted(model.named_parameters()):
        digest.update(name.encode())
        digest.update(parameter.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def fingerprints_of_all_processes(model: nn.Module) -> list[str]:
    """Each process's `weights_fingerprint`, in rank order (one entry without a launcher)."""
    import torch.distributed as dist

    mine = weights_fingerprint(model)
    if process_count() == 1 or not dist.is_initialized():
        return [mine]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, mine)
    return gathered


def replicas_are_whole(section: DistributedSection) -> bool:
    """Whether every process holds the whole model, so hashes of their weights must agree.

    DDP and ZeRO-2 replicate the parameters. FSDP's parameters are DTensor shards, a different slice
    on each process (no `.numpy()` either), and ZeRO-3's are empty placeholders: nothing to compare.
    """
    if section.strategy == "ddp":
        return True
    return section.strategy == "deepspeed" and section.deepspeed_options.stage < 3


def replica_fingerprints(model: nn.Module, section: DistributedSection) -> list[str] | None:
    """`fingerprints_of_all_processes` when several processes hold whole replicas, else None.

    Every process must call it (it gathers); the decision depends on the recipe only, so they agree.
    """
    if process_count() == 1 or not replicas_are_whole(section):
        return None
    return fingerprints_of_all_processes(model)


class LateParameterSync:
    """Average the gradients of parameters that DDP does not know about.

    DistributedDataParallel registers the parameters that require grad when it wraps the model and
    averages only their gradients. A layer unfrozen later (gradual unfreezing, or restored unfrozen
    on resume) would train on each process's own batch and the replicas would silently drift apart.
    `add` such parameters when they unfreeze; `sync` then averages their gradients over all
    processes once per optimizer step, after the last micro-batch's backward and before clipping,
    in one flattened all-reduce (what DDP would have done). Averaging a gradient DDP already
    averaged changes nothing, so adding a parameter DDP does know is harmless.
    """

    def __init__(self) -> None:
        self.parameters: list[nn.Parameter] = []
        self._ids: set[int] = set()

    def add(self, parameters: Iterable[nn.Parameter]) -> None:
        for parameter in parameters:
            if id(parameter) not in self._ids:
                self._ids.add(id(parameter))
                self.parameters.append(parameter)

    def sync(self) -> None:
        import torch
        import torch.distributed as dist

        if not self.parameters or process_count() == 1 or not dist.is_initialized():
            return
        grads = [p.grad for p in self.parameters if p.requires_grad and p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= dist.get_world_size()
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
            offset += grad.numel()


def deepspeed_config(options: DeepSpeedOptions) -> dict[str, Any]:
    """The DeepSpeed configuration of `distributed.deepspeed`, in the Trainer's format.

    `auto` values are filled in by the Trainer from the recipe (batch sizes, accumulation, clipping,
    precision), so they can never disagree with it. The optimizer and LR schedule stay the
    recipe's (DeepSpeed wraps them), so a run's numbers do not change with the strategy.
    """
    zero: dict[str, Any] = {
        "stage": options.stage,
        "overlap_comm": True,
        "contiguous_gradients": True,
        "reduce_bucket_size": "auto",
    }
    if options.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if options.offload_parameters:
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    if options.stage == 3:
        zero["stage3_prefetch_bucket_size"] = "auto"
        zero["stage3_param_persistence_threshold"] = "auto"
        zero["stage3_gather_16bit_weights_on_model_save"] = True  # model/ gets whole weights
    config: dict[str, Any] = {
        "zero_optimization": zero,
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
    }
    if options.offload_optimizer:
        config["zero_force_ds_cpu_optimizer"] = False  # keep the recipe's AdamW
    return config


def fsdp_config(options: FsdpOptions) -> dict[str, Any]:
    """The Trainer's `fsdp_config` for `distributed.fsdp` (FSDP2, one unit per transformer layer)."""
    return {
        "version": 2,
        "reshard_after_forward": options.sharding == "full_shard",
        "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",  # the model's own layer class (`_no_split_modules`)
        "cpu_offload": options.offload_parameters,
        "activation_checkpointing": False,  # finetune enables it before sharding (distributed/sharding.py)
        # the training state a checkpoint resumes from: one shard per process (torch.distributed.checkpoint);
        # the whole model is written beside it (RecipeTrainer.save_model). Accelerate's FULL_STATE_DICT
        # resume hangs under FSDP2 with several processes (accelerate 1.16, torch 2.13: the main
        # process broadcasts, the others return early on their empty state dict).
        "state_dict_type": "SHARDED_STATE_DICT",
    }


def strategy_arguments(section: DistributedSection, cpu: bool = False) -> dict[str, Any]:
    """`TrainingArguments` keywords for the recipe's strategy: DDP options, DeepSpeed or FSDP.

    One process has nothing to share: only the DDP options (harmless) apply. FSDP runs on CPU
    processes too (finetune shards the model itself: distributed/sharding.py); DeepSpeed needs GPUs,
    and a CPU run of a DeepSpeed recipe stops here rather than train something else.
    """
    arguments: dict[str, Any] = {
        "ddp_find_unused_parameters": section.ddp.find_unused_parameters,
        "ddp_bucket_cap_mb": section.ddp.bucket_cap_mb,
        "ddp_timeout": section.timeout_minutes * 60,
    }
    if process_count() == 1:
        return arguments
    if section.strategy == "deepspeed":
        check_deepspeed(cpu)
        arguments["deepspeed"] = deepspeed_config(section.deepspeed_options)
    elif section.strategy == "fsdp":
        arguments["fsdp"] = True
        arguments["fsdp_config"] = fsdp_config(section.fsdp_options)
    return arguments


def check_deepspeed(cpu: bool) -> None:
    """DeepSpeed needs CUDA GPUs and its package: say so before any process trains."""
    import importlib.util

    if cpu:
        raise FinetuneError(
            "distributed.strategy: deepspeed needs CUDA GPUs; on CPU processes use strategy `fsdp` "
            "(sharded, like ZeRO-3) or `ddp`"
        )
    if importlib.util.find_spec("deepspeed") is None:
        raise FinetuneError(
            "distributed.strategy: deepspeed needs the `deepspeed` package (`pip install deepspeed`, "
            "on a machine with CUDA); or use strategy `fsdp`, which needs nothing more"
        )


def quiet_unless_main() -> None:
    """Silence the progress bars of every process but the main one (they would print N times)."""
    if is_main_process():
        return
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


class EpochSeededSampler:
    """A sampler whose order depends only on (seed, epoch): the same on every process and after a resume.

    transformers' `LengthGroupedSampler` (`training.group_by_length`) draws its permutation from the
    global torch RNG when an epoch starts. That state differs between processes (dropout draws
    depend on each process's batch shapes) and, on resume, between the first run and the resumed
    one (the Trainer restores the RNG only after skipping the epoch's done batches): the processes
    would disagree on which examples make an epoch, and a resumed run would see other batches.
    This wrapper gives the sampler a generator seeded from `seed + epoch` instead.
    """

    def __init__(self, sampler: Any, seed: int) -> None:
        self.sampler = sampler
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        import torch

        self.sampler.generator = torch.Generator().manual_seed(self.seed + epoch)

    def __iter__(self):
        return iter(self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


class SamplerEpoch(TrainerCallback):
    """Tell the training sampler which epoch starts, whatever Accelerate wrapped it in.

    Seeded samplers draw each epoch's order from (seed, epoch). The Trainer reaches `set_epoch`
    through the data loader, but not after a resume under several processes: the loader that skips
    the epoch's finished batches wraps the sharded batch sampler once more, and the sampler would
    fall back to its own pass count (the resumed run would draw other batches than the first run).
    """

    def __init__(self) -> None:
        self.sampler: Any = None

    def on_epoch_begin(self, args, state, control, **kwargs):
        if self.sampler is not None and hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(int(state.epoch or 0))  # the epoch starting (or resumed)


def leave_together() -> None:
    """After a run that ended well, wait for every process before any tears the group down: the main
    process still writes the run folder while the others are done, and a peer that destroys its gloo
    group meanwhile can abort its own exit (status 134, "terminate called without an active
    exception", seen once in about ten 2-process CPU runs). Not after a failure: a barrier there would
    wait for a process that may never arrive."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def release_process_group() -> None:
    """Close torch.distributed before the process exits (else gloo can abort the exit: status 134)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def say(message: str) -> None:
    """Print for the user (once: only the main process of a multi-process run speaks)."""
    if is_main_process():
        print(message, flush=True)
