"""`finetune explain`, `validate` and `plot-schedule`: what a recipe will do, without training."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """A recipe and its overrides: the arguments of these commands, `lr-find` and `cv`."""
    parser.add_argument("recipe", help="recipe file, or the name of a shipped recipe (e.g. demo)")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="recipe overrides, e.g. optimizer.lr=3e-5"
    )


def _explain_plot(args: argparse.Namespace) -> Path | None:
    """Where `explain` writes its plot: --plot, else beside the recipe; never over a file unless --overwrite."""
    from finetune.recipe import find_recipe
    from finetune.runs.outputs import refuse_existing
    from finetune.training.explain import default_plot_path

    if args.no_plot:
        return None
    path = Path(args.plot) if args.plot else default_plot_path(find_recipe(args.recipe))
    refuse_existing(path, args.overwrite, "--plot")
    return path


def cmd_explain(args: argparse.Namespace) -> int:
    from finetune.recipe import load_recipe
    from finetune.training.explain import explain

    recipe = load_recipe(args.recipe, args.overrides)
    explain(recipe, num_labels=args.num_labels, steps=args.steps, plot=_explain_plot(args))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    import yaml

    from finetune.recipe import load_recipe
    from finetune.training.preflight import check_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    check_recipe(recipe, args.recipe)
    print(yaml.safe_dump(recipe.to_yaml_dict(), sort_keys=False), end="")
    if recipe.data.hub is not None:
        print(
            f"# data.hub '{recipe.data.hub.name}': not checked (`finetune train` downloads it)",
            file=sys.stderr,
        )
    print(f"# recipe '{args.recipe}' is valid", file=sys.stderr)
    return 0


def cmd_plot_schedule(args: argparse.Namespace) -> int:
    from finetune.recipe import load_recipe
    from finetune.schedules.plot import describe, planned_examples, plot_schedule, run_length, schedule_curves
    from finetune.training.defaults import resolve_for_planning

    recipe = load_recipe(args.recipe, args.overrides)
    resolution = resolve_for_planning(recipe, planned_examples(recipe))
    for note in resolution.notes:
        print(note)
    recipe = resolution.recipe
    length = run_length(recipe, args.steps, args.steps_per_epoch)
    curves = schedule_curves(recipe, length)
    for line in describe(recipe, curves, length):
        print(line)
    out = Path(args.out) if args.out else Path(f"{recipe.name or 'recipe'}-lr.png")
    print(f"wrote {plot_schedule(recipe, curves, length, out)}")
    return 0


def add_schedule_command(commands: argparse._SubParsersAction) -> None:
    """`plot-schedule`: the LR of a recipe over its run, without data or model weights."""
    plot = commands.add_parser(
        "plot-schedule", help="plot a recipe's learning rate over its run and print it at key steps"
    )
    add_recipe_arguments(plot)
    plot.add_argument("--steps", type=int, help="optimizer steps of the run (default: from the data size)")
    plot.add_argument(
        "--steps-per-epoch", type=float, help="optimizer steps per epoch (for schedules counted in epochs)"
    )
    plot.add_argument("--out", help="PNG path (default: <recipe name>-lr.png)")
    plot.set_defaults(handler=cmd_plot_schedule)


def add_recipe_commands(commands: argparse._SubParsersAction) -> None:
    """`explain` and `validate`: what a recipe does to the model, and whether it is valid."""
    explain = commands.add_parser(
        "explain", help="show what a recipe will do to the model (trainable blocks, LRs) without training"
    )
    add_recipe_arguments(explain)
    explain.add_argument(
        "--num-labels",
        type=int,
        default=None,
        help="size of the task head (default: read from the data, else 2); with it, no data is read",
    )
    explain.add_argument(
        "--steps",
        type=int,
        default=None,
        help="optimizer steps of the run, for the schedule and unfreezing steps (default: from the data size)",
    )
    explain.add_argument(
        "--plot",
        "--output",
        dest="plot",
        help="where to write the plot (default: <recipe>.explain.png beside the recipe file; "
        "for a shipped recipe, in the current folder)",
    )
    explain.add_argument("--overwrite", action="store_true", help="replace an existing plot file")
    explain.add_argument("--no-plot", action="store_true", help="do not write the plot")
    explain.set_defaults(handler=cmd_explain)

    validate = commands.add_parser(
        "validate",
        help="check a recipe, its data files' columns and its model (config only, no weights); print it resolved",
    )
    add_recipe_arguments(validate)
    validate.set_defaults(handler=cmd_validate)
