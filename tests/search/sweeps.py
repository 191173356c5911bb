"""What the sweep tests share: a recipe whose trials take seconds, sweep files, the results table,
and a scripted stand-in for training."""

import csv

from finetune.search.sweep_file import validate_sweep_file


def sweep_spec(**data):
    return validate_sweep_file({"name": "test", **data})


def read_table(folder):
    return list(csv.DictReader((folder / "results.csv").open()))


def scripted_train(outcomes, seen):
    """A stand-in for pipeline.train: each call takes the next outcome (a metric value or an error)."""
    from pathlib import Path

    from finetune.runs.folders import write_recipe
    from finetune.training.run import RunResult

    def train(recipe, source=None, callbacks=None):
        seen.append(recipe.optimizer.lr)
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        run_dir = Path(recipe.output.dir)
        run_dir.mkdir(parents=True)
        write_recipe(run_dir, recipe)
        return RunResult(run_dir=run_dir, results={"best": {"value": outcome}, "steps": 1})

    return train
