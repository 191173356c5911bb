"""`finetune lr-find`, `sweep` and `cv`: finding the learning rate and the recipe (finetune/search/)."""

from __future__ import annotations

import argparse
import sys

from finetune.commands.recipes import add_recipe_arguments
from finetune.errors import FinetuneError


def cmd_lr_find(args: argparse.Namespace) -> int:
    from pathlib import Path

    from finetune.recipe import load_recipe
    from finetune.search.lr_find import describe, find_lr, write_recipe_with_lr

    recipe = load_recipe(args.recipe, args.overrides)
    test, folder = find_lr(
        recipe,
        output=Path(args.output) if args.output else None,
        start_lr=args.min,
        end_lr=args.max,
        steps=args.steps,
        beta=args.smoothing,
        diverge=args.diverge,
    )
    for line in describe(test):
        print(line)
    print(f"wrote {folder / 'lr_find.png'} and {folder / 'lr_find.csv'}")
    if args.write:
        lr = test.suggestions.get(args.pick)
        if lr is None:
            print(f"finetune: error: no '{args.pick}' suggestion, so --write wrote nothing", file=sys.stderr)
            return 1
        note = f"optimizer.lr {lr:.3g}: the '{args.pick}' suggestion of `finetune lr-find` ({folder})"
        print(
            f"wrote {write_recipe_with_lr(recipe, lr, Path(args.write), note, test.reference_lr)} (optimizer.lr {lr:.3g})"
        )
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from pathlib import Path

    from finetune.recipe import find_recipe, load_recipe
    from finetune.search.sweep import run_sweep
    from finetune.search.sweep_file import load_sweep_file
    from finetune.search.sweep_folder import reopen_sweep, start_sweep
    from finetune.search.sweep_report import describe

    if args.resume:
        if args.recipe or args.sweep:
            raise FinetuneError("sweep: give either RECIPE SWEEP (and --output) or --resume DIR, not both")
        sweep = reopen_sweep(Path(args.resume))
    else:
        if not args.sweep:
            raise FinetuneError("sweep: give a recipe and a sweep file: finetune sweep RECIPE SWEEP.yaml")
        recipe = load_recipe(args.recipe, args.overrides)
        spec = load_sweep_file(args.sweep)
        output = Path(args.output) if args.output else None
        sweep = start_sweep(recipe, spec, output, args.sweep, str(find_recipe(args.recipe)))
    for line in describe(run_sweep(sweep), sweep.folder):
        print(line)
    return 0


def cmd_cv(args: argparse.Namespace) -> int:
    from pathlib import Path

    from finetune.recipe import load_recipe
    from finetune.search.cv import cross_validate
    from finetune.search.cv_report import describe

    recipe = load_recipe(args.recipe, args.overrides)
    if args.seeds:
        seeds = args.seeds
    else:
        seeds = [recipe.training.seed + i for i in range(args.repeats)]
    summary, folder = cross_validate(
        recipe, folds=args.folds, seeds=seeds, output=Path(args.output) if args.output else None
    )
    for line in describe(summary):
        print(line)
    print(f"table {folder / 'results.md'}, plot {folder / 'cv.png'}")
    return 0


def add_tuning_commands(commands: argparse._SubParsersAction) -> None:
    """`lr-find`, `sweep` and `cv`: finding the learning rate and the recipe."""
    lr_find = commands.add_parser(
        "lr-find", help="LR range test: suggest optimizer.lr from a short run with a growing LR"
    )
    add_recipe_arguments(lr_find)
    lr_find.add_argument("--min", type=float, default=1e-7, help="first learning rate (default 1e-7)")
    lr_find.add_argument("--max", type=float, default=1e-2, help="last learning rate (default 1e-2)")
    lr_find.add_argument("--steps", type=int, default=100, help="optimizer steps, one per LR (default 100)")
    lr_find.add_argument(
        "--smoothing", type=float, default=0.9, help="EMA factor of the loss curve, in [0, 1) (default 0.9)"
    )
    lr_find.add_argument(
        "--diverge", type=float, default=4.0, help="stop when the smoothed loss exceeds this x its minimum"
    )
    lr_find.add_argument("--output", help="folder for lr_find.png/.csv (default: <output.root>/lr-find-...)")
    lr_find.add_argument("--write", metavar="PATH", help="write the recipe with the suggested optimizer.lr")
    lr_find.add_argument(
        "--pick", choices=["steepest", "min/10"], default="min/10", help="suggestion --write uses"
    )
    lr_find.set_defaults(handler=cmd_lr_find)

    sweep = commands.add_parser(
        "sweep", help="hyper-parameter search over recipe keys (Optuna: grid, random, TPE; pruning)"
    )
    sweep.add_argument("recipe", nargs="?", help="recipe file, or the name of a shipped recipe")
    sweep.add_argument("sweep", nargs="?", help="sweep file (*.sweep.yaml), or the name of a shipped one")
    sweep.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="recipe overrides for every trial")
    sweep.add_argument(
        "--output", help="sweep folder (default: <output.root>/sweep-...); an existing one is resumed"
    )
    sweep.add_argument(
        "--resume", metavar="DIR", help="continue the sweep in DIR (another worker may share it)"
    )
    sweep.set_defaults(handler=cmd_sweep)

    cv = commands.add_parser(
        "cv", help="K-fold cross-validation (stratified) and seed repeats: mean and std of the metric"
    )
    add_recipe_arguments(cv)
    cv.add_argument(
        "--folds", type=int, default=5, help="K (default 5); 1: no folds, the recipe's own split per seed"
    )
    seeds = cv.add_mutually_exclusive_group()
    seeds.add_argument(
        "--repeats", type=int, default=1, help="repeat over N seeds: training.seed, +1, ... (default 1)"
    )
    seeds.add_argument("--seeds", type=int, nargs="+", metavar="SEED", help="repeat over these seeds")
    cv.add_argument("--output", help="cv folder (default: <output.root>/cv-<recipe name>-<timestamp>)")
    cv.set_defaults(handler=cmd_cv)
