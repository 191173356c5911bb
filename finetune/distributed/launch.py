"""`finetune launch`: `finetune train` on several processes, GPUs or machines, through Accelerate.

Accelerate's launcher starts the processes (torch's elastic launcher, `torchrun`, underneath);
finetune only writes its configuration from two sources: the launch options (how many processes
and machines, where the main machine is, precision, CPU) and the recipe's `distributed:` section
(DDP, DeepSpeed ZeRO or FSDP). Each process runs `finetune train` on the same recipe.

Before anything starts, the launcher loads and checks the recipe and fixes the run folder (so that
every process, and every machine, writes to the same one). Several processes on the CPU use
Accelerate's multi-GPU launcher with `use_cpu`: it is the one that starts N processes (they talk
over gloo); Accelerate's CPU launcher starts one unless MPI is installed.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from finetune.errors import FinetuneError
from finetune.recipe import Recipe
from finetune.recipe.distributed import DistributedSection

SHUTDOWN_TIMEOUT_VARIABLE = "TORCH_ELASTIC_SHUTDOWN_TIMEOUT"
SHUTDOWN_TIMEOUT_SECONDS = 300  # time to finish a step and write a checkpoint after SIGTERM
DEFAULT_PORT = 29500  # torchrun's default rendezvous port (single machines pick a free one)
PRECISION_FOR_ACCELERATE = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


@dataclass
class LaunchOptions:
    """What `finetune launch` was asked for (see `finetune launch --help`)."""

    num_processes: int | None = None  # over all machines, as in Accelerate; default: GPUs here, or 1
    num_machines: int = 1
    machine_rank: int = 0
    main_process_ip: str | None = None
    main_process_port: int | None = None
    mixed_precision: str | None = None  # bf16 | fp16 | no; default: the recipe's training.precision
    cpu: bool = False
    train_arguments: list[str] = field(default_factory=list)  # recipe and overrides for `finetune train`
    train_flags: list[str] = field(default_factory=list)  # its options (--resume ...), after the overrides


def default_processes(cpu: bool) -> int:
    import torch

    return 1 if cpu or not torch.cuda.is_available() else torch.cuda.device_count()


def distributed_type(section: DistributedSection, processes: int, cpu: bool = False) -> str:
    """Accelerate's `distributed_type` for the strategy (several CPU processes use MULTI_GPU, see above;
    FSDP on the CPU too: the processes shard the model themselves, distributed/sharding.py)."""
    if section.strategy == "deepspeed":
        return "DEEPSPEED"
    if section.strategy == "fsdp" and not cpu:
        return "FSDP"
    return "MULTI_GPU" if processes > 1 else "NO"


def accelerate_config(
    section: DistributedSection,
    options: LaunchOptions,
    processes: int,
    mixed_precision: str,
    deepspeed_file: Path | None = None,
) -> dict[str, Any]:
    """The Accelerate config file (`accelerate launch --config_file`) for this launch and strategy.

    The strategy's own settings reach the Trainer through the recipe (`distributed.strategy_arguments`),
    so `finetune train` under any launcher behaves the same; here they select Accelerate's launcher
    and are recorded where Accelerate users expect them.
    """
    config: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": distributed_type(section, processes, options.cpu),
        "num_processes": processes,
        "num_machines": options.num_machines,
        "machine_rank": options.machine_rank,
        "main_process_port": options.main_process_port
        if options.main_process_port is not None
        else (DEFAULT_PORT if options.num_machines > 1 else 0),
        "mixed_precision": mixed_precision,
        "use_cpu": options.cpu,
        "gpu_ids": "all",
        "rdzv_backend": "static",
        "same_network": True,
        "debug": False,
    }
    if options.main_process_ip is not None:
        config["main_process_ip"] = options.main_process_ip
    if section.strategy == "deepspeed":
        config["deepspeed_config"] = {
            "deepspeed_config_file": str(deepspeed_file) if deepspeed_file else None,
            "deepspeed_multinode_launcher": "standard",  # torchrun on every machine, as for DDP
            "zero3_init_flag": False,
        }
    elif section.strategy == "fsdp":
        from finetune.distributed.processes import fsdp_config

        fsdp = fsdp_config(section.fsdp_options)
        config["fsdp_config"] = {
            "fsdp_version": fsdp["version"],
            "fsdp_reshard_after_forward": fsdp["reshard_after_forward"],
            "fsdp_auto_wrap_policy": fsdp["auto_wrap_policy"],
            "fsdp_offload_params": fsdp["cpu_offload"],
            "fsdp_activation_checkpointing": fsdp["activation_checkpointing"],
            "fsdp_state_dict_type": fsdp["state_dict_type"],
            "fsdp_cpu_ram_efficient_loading": False,
        }
    return config


def launch_overrides(recipe: Recipe, options: LaunchOptions, resuming: bool) -> list[str]:
    """Overrides every process adds to the recipe: the shared run folder, CPU, precision."""
    overrides = []
    if not resuming and recipe.output.dir is None:
        if options.num_machines > 1:
            raise FinetuneError(
                "finetune launch: with several machines set output.dir (on a filesystem every machine "
                "shares), so that they all write the same run folder"
            )
        from finetune.runs.folders import default_run_dir

        overrides.append(f"output.dir={default_run_dir(recipe).resolve()}")
    elif not resuming and recipe.checkpoints.resume == "never" and Path(recipe.output.dir).exists():
        raise FinetuneError(
            f"output.dir: {recipe.output.dir} already exists; finetune never overwrites a run. Choose a new "
            f"folder, or resume it with `finetune launch ... --resume {recipe.output.dir}`"
        )
    if options.cpu:
        overrides.append("training.cpu=true")
    if options.mixed_precision is not None:
        precision = {"no": "fp32"}.get(options.mixed_precision, options.mixed_precision)
        overrides.append(f"training.precision={precision}")
    return overrides


def on_cpu(recipe: Recipe, options: LaunchOptions) -> bool:
    import torch

    return options.cpu or recipe.training.cpu or not torch.cuda.is_available()


def resolved_mixed_precision(recipe: Recipe, options: LaunchOptions) -> str:
    """Accelerate's name for the precision the processes will train at."""
    from finetune.distributed.devices import resolve_precision

    if options.mixed_precision is not None:
        return options.mixed_precision
    return PRECISION_FOR_ACCELERATE[resolve_precision(recipe.training.precision, on_cpu(recipe, options))]


def launch(recipe: Recipe, options: LaunchOptions, resuming: bool = False) -> int:
    """Start `finetune train` on every process through Accelerate; the exit status of the run."""
    processes = options.num_processes or default_processes(options.cpu) * options.num_machines
    if processes % options.num_machines:
        raise FinetuneError(
            f"--num-processes {processes} is the total over all machines: it must be a multiple of "
            f"--num-machines {options.num_machines}"
        )
    if options.num_machines > 1 and options.main_process_ip is None:
        raise FinetuneError(
            "finetune launch: with several machines give --main-process-ip (of machine rank 0)"
        )
    recipe.training.batch_plan(processes)  # an uneven global batch fails here, not in N processes
    overrides = launch_overrides(recipe, options, resuming)
    train_arguments = [*options.train_arguments, *overrides, *options.train_flags]
    mixed_precision = resolved_mixed_precision(recipe, options)
    section = recipe.distributed
    if section.strategy == "deepspeed":
        from finetune.distributed.processes import check_deepspeed

        check_deepspeed(on_cpu(recipe, options))
    print(
        f"finetune launch: {processes} process{'es' if processes > 1 else ''} on {options.num_machines} "
        f"machine{'s' if options.num_machines > 1 else ''} ({section.strategy}, "
        f"{'cpu' if options.cpu else mixed_precision})",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="finetune-launch-") as folder:
        deepspeed_file = None
        if section.strategy == "deepspeed":
            from finetune.distributed.processes import deepspeed_config

            deepspeed_file = Path(folder) / "deepspeed.json"
            deepspeed_file.write_text(json.dumps(deepspeed_config(section.deepspeed_options), indent=2))
        config = accelerate_config(section, options, processes, mixed_precision, deepspeed_file)
        config_file = Path(folder) / "accelerate.yaml"
        config_file.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        return run_accelerate(config_file, train_arguments)


def run_accelerate(config_file: Path, train_arguments: list[str]) -> int:
    """`accelerate launch --config_file FILE -m finetune.cli train ...`, in this process.

    A failed or signalled run is its exit status (the processes printed why); any other error is the
    launcher's own (a bad configuration, a port in use) and is raised as a `FinetuneError`.
    """
    from subprocess import CalledProcessError

    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    # On SIGTERM torch's elastic agent gives the processes this long before it kills them (its own
    # default is 30 s): they finish the step and save a checkpoint, which can take longer.
    os.environ.setdefault(SHUTDOWN_TIMEOUT_VARIABLE, str(SHUTDOWN_TIMEOUT_SECONDS))
    argv = ["--config_file", str(config_file), "--module", "finetune.cli", "train", *train_arguments]
    args = launch_command_parser().parse_args(argv)
    try:
        launch_command(args)
    except ChildFailedError as error:
        _, failure = error.get_first_failure()
        return _report_failure(failure.exitcode)
    except CalledProcessError as error:  # one process, started without torchrun
        return _report_failure(error.returncode)
    except SignalException as error:  # the launcher itself got SIGTERM/SIGINT and stopped the processes
        return _report_failure(128 + int(error.sigval))
    except Exception as error:
        raise FinetuneError(
            f"finetune launch: Accelerate's launcher failed: {type(error).__name__}: {error}"
        ) from error
    return 0


def _report_failure(code: int) -> int:
    code = code if code > 0 else 128 - code  # a negative exit code is a signal number
    print(
        f"finetune launch: the run stopped with exit status {code} (its messages are above)", file=sys.stderr
    )
    return code
