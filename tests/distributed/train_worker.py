"""One process of a multi-process test run, with a SIGTERM at a chosen step (what a scheduler does):

    python -m torch.distributed.run --nproc_per_node 2 train_worker.py RECIPE [--stop-at STEP] [--resume RUN]

Every process signals itself at the end of the same step, as a job scheduler signals every process
of a job; the run saves a checkpoint and stops (training/guards.py).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from transformers import TrainerCallback

from finetune.errors import FinetuneError
from finetune.runs.resume import load_train_recipe
from finetune.training.run import train


class SigtermAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("recipe", nargs="?")
    parser.add_argument("--stop-at", type=int)
    parser.add_argument("--resume")
    args = parser.parse_args()
    recipe, source, _ = load_train_recipe(args.recipe, [], args.resume)
    callbacks = [SigtermAt(args.stop_at)] if args.stop_at else []
    try:
        train(recipe, source=source, callbacks=callbacks, resume=args.resume)
    except FinetuneError as error:
        print(f"finetune: error: {error}", file=sys.stderr)
        return getattr(error, "exit_code", 2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
