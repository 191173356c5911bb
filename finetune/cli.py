"""The `finetune` command: thin subcommands that parse arguments and call the modules.

Heavy libraries are imported inside the commands, so `finetune --help` answers at once.
A `FinetuneError` is printed as one message (no traceback) with exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from .errors import FinetuneError

EXIT_USER_ERROR = 2

EPILOG = """\
recipes: YAML files (see recipes/ and the README's recipe reference). Override any key from
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


def cmd_train(args: argparse.Namespace) -> int:
    from .pipeline import train
    from .recipe import find_recipe, load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    train(recipe, source=str(find_recipe(args.recipe)))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from .explain import explain
    from .recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    explain(recipe, num_labels=args.num_labels)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    import yaml

    from .recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    print(yaml.safe_dump(recipe.to_yaml_dict(), sort_keys=False), end="")
    print(f"# recipe '{args.recipe}' is valid", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finetune",
        description="Fine-tune Hugging Face Transformer encoders from YAML recipe files.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"finetune {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = commands.add_parser("train", help="fine-tune a model as a recipe says; writes a run folder")
    _add_recipe_arguments(train)
    train.set_defaults(handler=cmd_train)

    explain = commands.add_parser(
        "explain", help="show what a recipe will do to the model (trainable blocks, LRs) without training"
    )
    _add_recipe_arguments(explain)
    explain.add_argument(
        "--num-labels",
        type=int,
        default=None,
        help="size of the task head (default: read from the data, else 2)",
    )
    explain.set_defaults(handler=cmd_explain)

    validate = commands.add_parser("validate", help="check a recipe and print it fully resolved")
    _add_recipe_arguments(validate)
    validate.set_defaults(handler=cmd_validate)
    return parser


def run(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        return handler(args)
    except FinetuneError as error:
        print(f"finetune: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
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
