"""The `finetune` command: thin subcommands that parse arguments and call the modules.

Heavy libraries are imported inside the commands, so `finetune --help` answers at once.
A `FinetuneError` is printed as one message (no traceback) with exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from finetune.errors import FinetuneError

EXIT_USER_ERROR = 2

EPILOG = """\
recipes: YAML files (see recipes/ and docs/recipe-reference.md). Override any key from
the command line as section.key=value, e.g. optimizer.lr=3e-5 training.epochs=2.

examples:
  finetune train recipes/demo.yaml
  finetune train recipes/glue-mrpc.yaml data.dir=../shared/data/glue training.epochs=1
  finetune explain recipes/freeze-bottom-half.yaml
"""


def _add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="recipe file, or the name of a shipped recipe (e.g. demo)")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="recipe overrides, e.g. optimizer.lr=3e-5"
    )


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
    from finetune.distributed.processes import release_process_group
    from finetune.runs.resume import load_train_recipe
    from finetune.training.run import train

    recipe, source, _ = load_train_recipe(args.recipe, args.overrides, args.resume)
    try:
        train(recipe, source=source, resume=args.resume, allow_recipe_change=args.allow_recipe_change)
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
    _add_recipe_arguments(plot)
    plot.add_argument("--steps", type=int, help="optimizer steps of the run (default: from the data size)")
    plot.add_argument(
        "--steps-per-epoch", type=float, help="optimizer steps per epoch (for schedules counted in epochs)"
    )
    plot.add_argument("--out", help="PNG path (default: <recipe name>-lr.png)")
    plot.set_defaults(handler=cmd_plot_schedule)


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
    _add_recipe_arguments(lr_find)
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
    _add_recipe_arguments(cv)
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


def _input_columns(args: argparse.Namespace) -> dict:
    """Column and file options for `predict`/`evaluate` (None: the run's recipe, or the default)."""
    names = ("text", "text_pair", "label", "label_separator", "format")
    columns = {name: getattr(args, name, None) for name in names}
    columns = {
        k: (int(v) if isinstance(v, str) and v.isdigit() and k != "label_separator" else v)
        for k, v in columns.items()
    }
    if getattr(args, "no_header", False):
        columns["header"] = False
    return columns


def cmd_predict(args: argparse.Namespace) -> int:
    from finetune.inference.predict import predict_file

    records = predict_file(
        args.source,
        args.input,
        args.output,
        batch_size=args.batch_size,
        columns=_input_columns(args),
        threshold=args.threshold,
        max_length=args.max_length,
        device=args.device,
        overwrite=args.overwrite,
    )
    print(f"wrote {len(records):,} predictions to {args.output}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from finetune.inference.evaluate import evaluate_file
    from finetune.training.callbacks import format_metrics

    summary = evaluate_file(
        args.source,
        args.data,
        output_dir=args.output_dir,
        batch_size=args.batch_size,
        columns=_input_columns(args),
        threshold=args.threshold,
        max_length=args.max_length,
        device=args.device,
        overwrite=args.overwrite,
    )
    print(f"{summary['examples']:,} examples of {summary['data']}: {format_metrics(summary['metrics'])}")
    print(
        f"wrote evaluation.json, predictions.jsonl, {', '.join(summary['figures'])} to {summary['output_dir']}"
    )
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from finetune.runs.compare import compare_runs

    print(compare_runs(args.runs, figure=None if args.no_plot else args.plot))
    if not args.no_plot:
        print(f"\nwrote {args.plot}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from finetune.runs.report import write_run_documents

    for path in write_run_documents(args.run):
        print(f"wrote {path}")
    return 0


def _add_input_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "source", type=Path, help="a run folder (uses its model/ and recipe.yaml) or a model folder"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="texts per forward pass (default 64)")
    parser.add_argument(
        "--text", help=f"column of the {what} texts (default: the run's data.text, else 'text')"
    )
    parser.add_argument("--text-pair", help="column of the second text of sentence pairs")
    parser.add_argument(
        "--format",
        choices=["csv", "tsv", "json", "jsonl", "parquet", "conll"],
        help="file format (default: from the extension)",
    )
    parser.add_argument(
        "--no-header", action="store_true", help="CSV/TSV without a header row (columns by position)"
    )
    parser.add_argument("--threshold", type=float, help="multi_label decision threshold (default: the run's)")
    parser.add_argument("--max-length", type=int, help="token limit (default: the run's data.max_length)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")


def add_model_commands(commands: argparse._SubParsersAction) -> None:
    """`predict`, `evaluate`, `compare`, `report`: using and reading what runs left behind."""
    predict = commands.add_parser("predict", help="predict labels for a file of texts with a trained model")
    _add_input_options(predict, "input")
    predict.add_argument(
        "--input", type=Path, required=True, help="csv, tsv, json, jsonl or parquet (CoNLL for tagging)"
    )
    predict.add_argument(
        "--output", type=Path, required=True, help="JSON-lines file: one prediction per input, in order"
    )
    predict.add_argument(
        "--overwrite", action="store_true", help="replace an existing --output file (never the --input)"
    )
    predict.set_defaults(handler=cmd_predict)

    evaluate = commands.add_parser(
        "evaluate", help="metrics and a confusion matrix of a trained model on a labelled file"
    )
    _add_input_options(evaluate, "labelled")
    evaluate.add_argument("--data", type=Path, required=True, help="labelled file, read like training data")
    evaluate.add_argument("--label", help="label column (default: the run's data.label, else 'label')")
    evaluate.add_argument(
        "--label-separator", help="multi_label: separator in label cells (default: the run's)"
    )
    evaluate.add_argument("--output-dir", type=Path, help="default: <run>/evaluations/<file name>")
    evaluate.add_argument(
        "--overwrite", action="store_true", help="replace the results of an earlier evaluation in that folder"
    )
    evaluate.set_defaults(handler=cmd_evaluate)

    compare = commands.add_parser(
        "compare", help="table of how runs differ and score, and their validation curves"
    )
    compare.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="two or more run folders")
    compare.add_argument(
        "--plot", type=Path, default=Path("compare.png"), help="figure path (default compare.png)"
    )
    compare.add_argument("--no-plot", action="store_true", help="print the table only")
    compare.set_defaults(handler=cmd_compare)

    report = commands.add_parser("report", help="(re)write report.md and the model card of a run folder")
    report.add_argument("run", type=Path, metavar="RUN_DIR")
    report.set_defaults(handler=cmd_report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finetune",
        description="Fine-tune Hugging Face Transformer encoders from YAML recipe files.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from finetune import __version__

    parser.add_argument("--version", action="version", version=f"finetune {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = commands.add_parser("train", help="fine-tune a model as a recipe says; writes a run folder")
    _add_train_arguments(train)
    train.set_defaults(handler=cmd_train)
    add_launch_command(commands)

    explain = commands.add_parser(
        "explain", help="show what a recipe will do to the model (trainable blocks, LRs) without training"
    )
    _add_recipe_arguments(explain)
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
    _add_recipe_arguments(validate)
    validate.set_defaults(handler=cmd_validate)
    add_model_commands(commands)
    add_tuning_commands(commands)
    add_schedule_command(commands)
    return parser


def run(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        return handler(args)
    except FinetuneError as error:
        # a stop every process agreed on (training/guards.py) is told once, by the main process
        if not getattr(error, "same_on_every_process", False) or int(os.environ.get("RANK", "0")) == 0:
            print(f"finetune: error: {error}", file=sys.stderr)
        return getattr(error, "exit_code", EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print("finetune: interrupted", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # we report what matters ourselves
    args = build_parser().parse_args(argv)
    return run(args.handler, args)


if __name__ == "__main__":
    sys.exit(main())
