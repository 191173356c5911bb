"""What the sweep tests share: a recipe whose trials take seconds, sweep files, the results table,
and a scripted stand-in for training."""

import csv

from finetune.recipe import validate_recipe
from finetune.search.sweep_file import validate_sweep_file


def short_trial_recipe(tiny_recipe):
    """The tiny recipe, 4 steps with an evaluation every 2, no model saved: a trial takes seconds."""
    tiny_recipe["training"].update({"max_steps": 4})
    tiny_recipe["evaluation"].update({"every": 2, "before_training": False})
    tiny_recipe["output"].update({"save_model": False, "plots": False, "dir": None})
    tiny_recipe["early_stopping"] = {"metric": "loss"}
    return validate_recipe(tiny_recipe)


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
