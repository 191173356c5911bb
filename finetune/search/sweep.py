"""`finetune sweep`: hyper-parameter search over recipe keys with Optuna.

A sweep file (`finetune/recipe/sweep.py`) names recipe keys and their values or ranges; every
trial is the base recipe with those keys set, trained by the ordinary `finetune train` pipeline
into its own run folder inside the sweep folder:

    <sweep>/
      recipe.yaml, sweep.yaml   the base recipe and the sweep file, resolved (a resume checks them)
      study.db                  Optuna's storage (SQLite): a stopped sweep resumes from it
      trial-000/ ...            one ordinary run folder per trial
      results.csv, results.md   every trial, best first
      sweep.png, curves.png     metric against each swept key; each trial's metric over steps
      best.yaml                 the winning trial's recipe, ready for `finetune train`

The parts: the sweep file and its search space (`search/sweep_file.py`), the sweep folder and
resuming it (`search/sweep_folder.py`), the Optuna study, its samplers and pruning
(`search/sweep_study.py`), the results files (`search/sweep_report.py`); this module runs the
trials.
"""

from __future__ import annotations

import math
from typing import Any

import optuna

from finetune.errors import FinetuneError, RecipeError
from finetune.search.sweep_file import trial_recipe
from finetune.search.sweep_folder import SweepRun
from finetune.search.sweep_report import decode, show, write_report
from finetune.search.sweep_study import (
    GRACE_PERIOD_S,
    OptunaPruning,
    enqueue_pending,
    finished_count,
    open_study,
    suggest,
)


class TrialError(FinetuneError):
    """One trial cannot run (its combination of values makes an invalid recipe, or training refused it)."""


def run_sweep(sweep: SweepRun) -> dict[str, Any]:
    """Run the trials the budget still allows, then write the results; returns the summary."""
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    from finetune.distributed.processes import say

    task = sweep.recipe.model.task
    stopping = sweep.recipe.early_stopping
    metric, greater = stopping.watched_metric(task), stopping.greater_is_better(task)
    study = open_study(sweep.folder, sweep.spec, greater)
    budget, done = sweep.spec.budget(), finished_count(study)
    queued = enqueue_pending(study, sweep.spec)
    held = running_trials(study)  # another worker's, or a killed worker's within the grace period
    say(
        f"sweep: {sweep.spec.method}, {budget} trials, optimizing {metric} ({'max' if greater else 'min'}); "
        f"folder {sweep.folder}"
        + (f"; resuming: {done} finished, {queued} queued" if done or queued else "")
        + (f"; {len(held)} marked running" if held else "")
    )
    remaining = budget - done
    if sweep.spec.method == "grid":  # only queued combinations: the sampler must never draw a repeat
        remaining = min(remaining, queued)
    if remaining <= 0:
        say("nothing left to run" + ("" if held else ": the sweep has used its budget"))
        summary = write_report(study, sweep, metric, greater)
    else:
        try:
            study.optimize(
                lambda trial: run_trial(trial, sweep, metric, budget),
                n_trials=remaining,
                catch=(TrialError,),
                callbacks=[
                    MaxTrialsCallback(budget, states=(TrialState.COMPLETE, TrialState.PRUNED)),
                    lambda study, trial: write_report(study, sweep, metric, greater),
                ],
                gc_after_trial=True,
            )
        finally:  # stopped or not, the table shows where the sweep stands
            summary = write_report(study, sweep, metric, greater)
    for line in running_notes(study, sweep):
        say(line)
    return summary


def running_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))


def running_notes(study: optuna.Study, sweep: SweepRun) -> list[str]:
    """The trials a session leaves alone because they are marked running, and what to do about them.

    A worker killed outright (SIGKILL, a lost machine) cannot mark its trial failed; Optuna fails it
    once its heartbeat is GRACE_PERIOD_S old. Until then it cannot be told from a live worker's
    trial, so a resume in between skips it: this says so, rather than ending as if the sweep were done.
    """
    lines = []
    for trial in running_trials(study):
        values = trial.params or trial.system_attrs.get("fixed_params", {})  # queued values until it draws
        shown = ", ".join(f"{k}={show(v)}" for k, v in decode(sweep.spec, values).items())
        lines.append(f"trial {trial.number} ({shown}) is marked running; this session did not run it")
    if lines:
        again = (
            "runs it again" if sweep.spec.method == "grid" else "runs its values again if the budget has room"
        )
        lines.append(
            f"  another worker is running it, or its worker was killed: a running trial counts as alive until "
            f"its last heartbeat is {GRACE_PERIOD_S} s old. If no worker is running it, "
            f"`finetune sweep --resume {sweep.folder}` started after that {again}."
        )
    return lines


def run_trial(trial: optuna.Trial, sweep: SweepRun, metric: str, budget: int) -> float:
    """One trial: the recipe with this trial's values, trained into `<sweep>/trial-NNN`."""
    from finetune.distributed.processes import say
    from finetune.runs.folders import write_results
    from finetune.training.guards import RunInterrupted, TrainingDiverged
    from finetune.training.run import train

    params = {key: suggest(trial, key, dim) for key, dim in sweep.spec.space.items()}
    run_dir = sweep.folder / f"trial-{trial.number:03d}"
    trial.set_user_attr("run_dir", run_dir.name)
    shown = ", ".join(f"{k}={show(v)}" for k, v in params.items())
    say(f"\n=== trial {trial.number} ({finished_count(trial.study) + 1} of {budget}): {shown}")
    try:
        recipe = trial_recipe(sweep.recipe, params, run_dir, sweep.source)
    except RecipeError as error:
        return _fail(trial, f"this combination makes an invalid recipe: {error}")
    pruning = OptunaPruning(trial, metric)
    try:
        result = train(recipe, source=f"trial {trial.number} of sweep {sweep.folder}", callbacks=[pruning])
    except RunInterrupted as error:  # Ctrl-C or SIGTERM: stop the sweep; the trial runs again on resume
        raise KeyboardInterrupt(str(error)) from error
    except TrainingDiverged as error:  # these values made the loss or metric blow up: a result, not a bug
        return _fail(trial, str(error))
    except FinetuneError as error:
        if finished_count(trial.study) == 0:
            raise  # nothing has worked yet: most likely the whole sweep is wrong, so stop and say why
        return _fail(trial, str(error))
    value = result.results["best"]["value"]
    trial.set_user_attr("value", value)
    trial.set_user_attr("steps", result.results["steps"])
    if pruning.pruned_at is not None:
        reason = f"pruned by the sweep at step {pruning.pruned_at} (evaluation {pruning.evaluations})"
        result.results["stop_reason"] = reason
        write_results(run_dir, result.results)
        say(f"trial {trial.number}: {reason}; best {metric} {value}")
        raise optuna.TrialPruned(reason)
    if value is None or not math.isfinite(value):
        return _fail(trial, f"no {metric} value: the run never evaluated after training started")
    return float(value)


def _fail(trial: optuna.Trial, message: str) -> float:
    from finetune.distributed.processes import say

    trial.set_user_attr("error", message)
    say(f"trial {trial.number} failed: {message}")
    raise TrialError(message)
