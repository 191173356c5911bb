"""The `finetune` command: parses the arguments and calls the function of the command asked for.

The commands, their arguments and their functions are in finetune/commands/, a module per group.

Heavy libraries are imported inside the commands, so `finetune --help` answers at once.
A `FinetuneError` is printed as one message (no traceback) with exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from finetune.commands.models import add_model_commands
from finetune.commands.recipes import add_recipe_commands, add_schedule_command
from finetune.commands.training import add_launch_command, add_train_command
from finetune.commands.tuning import add_tuning_commands
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

    add_train_command(commands)
    add_launch_command(commands)
    add_recipe_commands(commands)
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
