"""`finetune train` and `finetune launch`: a run, on one process or on several through Accelerate."""

from __future__ import annotations

import argparse


def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """A recipe (optional when resuming), overrides, and the resume options of `train` and `launch`."""
    parser.add_argument(
        "recipe", nargs="?", help="recipe file or shipped name (with --resume: default the run's own)"
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="recipe overrides, e.g. optimizer.lr=3e-5"
    )
    parser.add_argument(
        "--resume", metavar="RUN_DIR", help="continue this run folder from its newest complete checkpoint"
    )
    parser.add_argument(
        "--allow-recipe-change",
        action="store_true",
        help="with --resume: continue although the recipe differs from the run's (the difference is recorded)",
    )


def cmd_train(args: argparse.Namespace) -> int:
    from finetune.distributed.processes import leave_together, release_process_group
    from finetune.runs.resume import load_train_recipe
    from finetune.training.run import train

    recipe, source, _ = load_train_recipe(args.recipe, args.overrides, args.resume)
    try:
        train(recipe, source=source, resume=args.resume, allow_recipe_change=args.allow_recipe_change)
        leave_together()
    finally:
        release_process_group()  # one of several processes: leave the group cleanly
    return 0


def cmd_launch(args: argparse.Namespace) -> int:
    from finetune.distributed.launch import LaunchOptions, launch
    from finetune.runs.resume import load_train_recipe

    recipe, source, overrides = load_train_recipe(args.recipe, args.overrides, args.resume)
    flags = ["--resume", args.resume] if args.resume else []
    if args.allow_recipe_change:
        flags.append("--allow-recipe-change")
    options = LaunchOptions(
        num_processes=args.num_processes,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        main_process_ip=args.main_process_ip,
        main_process_port=args.main_process_port,
        mixed_precision=args.mixed_precision,
        cpu=args.cpu,
        train_arguments=[source, *overrides],  # what each process gives `finetune train`
        train_flags=flags,
    )
    return launch(recipe, options, resuming=args.resume is not None)


def add_launch_command(commands: argparse._SubParsersAction) -> None:
    """`finetune launch`: `finetune train` on several processes/GPUs/machines via Accelerate."""
    launch = commands.add_parser(
        "launch",
        help="run `finetune train` on several GPUs, processes or machines (Accelerate's launcher)",
        description="Run `finetune train` once per process through Accelerate's launcher (torchrun). "
        "The recipe's distributed: section picks DDP, DeepSpeed or FSDP.",
    )
    launch.add_argument(
        "--num-processes", type=int, help="processes over all machines (default: the GPUs here, or 1)"
    )
    launch.add_argument("--num-machines", type=int, default=1, help="machines taking part (default 1)")
    launch.add_argument("--machine-rank", type=int, default=0, help="this machine's rank, 0 to M-1")
    launch.add_argument("--main-process-ip", help="address of machine rank 0 (several machines)")
    launch.add_argument("--main-process-port", type=int, help="its port (default 29500; one machine: free)")
    launch.add_argument(
        "--mixed-precision", choices=["bf16", "fp16", "no"], help="overrides training.precision"
    )
    launch.add_argument("--cpu", action="store_true", help="run every process on the CPU (gloo)")
    _add_train_arguments(launch)
    launch.set_defaults(handler=cmd_launch)


def add_train_command(commands: argparse._SubParsersAction) -> None:
    """`finetune train`: one run as a recipe says (or a stopped run continued)."""
    train = commands.add_parser("train", help="fine-tune a model as a recipe says; writes a run folder")
    _add_train_arguments(train)
    train.set_defaults(handler=cmd_train)
