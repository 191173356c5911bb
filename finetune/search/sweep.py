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

(the results files are written by `search/sweep_report.py`).

Search (Akiba et al., 2019, "Optuna"): `random` (RandomSampler), `tpe` (TPESampler, Bergstra et
al., 2011), `grid` (every combination enqueued as a fixed trial with `Study.enqueue_trial`, so that
an interrupted combination is queued again on resume; GridSampler counts a failed combination as
visited and would skip it). Pruning: each evaluation reports the watched metric to Optuna; when
its MedianPruner says so, the trial stops and is marked pruned. Several processes can work on one
sweep at the same time (`finetune sweep --resume DIR` in each): they share the budget and the
study through the SQLite file.
"""

from __future__ import annotations

import itertools
import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.samplers import BaseSampler
from pydantic import ValidationError
from transformers import TrainerCallback

from finetune.errors import FinetuneError, RecipeError
from finetune.recipe import Recipe, parse_yaml, shipped_recipes_dir, validate_recipe
from finetune.recipe.loading import deep_merge
from finetune.recipe.sweep import RangeSpec, SweepFile
from finetune.search.sweep_report import BASE_RECIPE_FILE, decode, label, show, write_report

SWEEP_SUFFIX = ".sweep.yaml"
STORAGE_FILE = "study.db"
STUDY_NAME = "finetune-sweep"
SWEEP_FILE = "sweep.yaml"
EVAL_PREFIX = "eval_"
HEARTBEAT_S = 60  # a running trial's worker writes a heartbeat this often
GRACE_PERIOD_S = 180  # a running trial whose heartbeat is older counts as dead: failed, then queued again


class SweepError(FinetuneError):
    """A sweep file or sweep folder is invalid."""


class TrialError(FinetuneError):
    """One trial cannot run (its combination of values makes an invalid recipe, or training refused it)."""


# ---------------------------------------------------------------------------------------------
# Sweep files


def find_sweep_file(reference: str) -> Path:
    """A sweep file by path, or the name of one shipped in `recipes/sweeps/` (`demo-lr`)."""
    path = Path(reference)
    if path.is_file():
        return path.resolve()
    shipped = shipped_recipes_dir() / "sweeps"
    name = reference if reference.endswith(SWEEP_SUFFIX) else f"{reference}{SWEEP_SUFFIX}"
    if (shipped / name).is_file():
        return (shipped / name).resolve()
    names = sorted(p.name.removesuffix(SWEEP_SUFFIX) for p in shipped.glob(f"*{SWEEP_SUFFIX}"))
    raise SweepError(f"sweep file '{reference}' not found (nor in {shipped}; shipped: {', '.join(names)})")


def load_sweep_file(reference: str | Path) -> SweepFile:
    """Read and validate a sweep file; every problem is reported at once, naming the key."""
    path = find_sweep_file(str(reference))
    data = parse_yaml(path.read_text(encoding="utf-8"), str(path))
    if not isinstance(data, dict):
        raise SweepError(f"{path}: a sweep file must be a mapping (method, trials, space, ...)")
    data.setdefault("name", path.name.removesuffix(SWEEP_SUFFIX).removesuffix(".yaml"))
    return validate_sweep_file(data, str(path))


def validate_sweep_file(data: dict, source: str = "sweep file") -> SweepFile:
    try:
        return SweepFile.model_validate(data)
    except ValidationError as error:
        lines = []
        for item in error.errors(include_url=False):
            where = ".".join(str(p) for p in item["loc"])
            message = item["msg"].removeprefix("Value error, ")
            if item["type"] == "extra_forbidden":
                from finetune.recipe.loading import _unknown_key_message

                owner = SweepFile if len(item["loc"]) == 1 else None
                message = _unknown_key_message(str(item["loc"][-1]), owner)
            for line in message.split("\n"):
                # messages of the `space` check name their own keys (space.optimizer.lr: ...)
                lines.append(line if line.startswith("space.") or not where else f"{where}: {line}")
        body = "\n".join(f"  - {source}: {line}" for line in lines)
        count = len(lines)
        raise SweepError(
            f"sweep file is invalid ({count} problem{'s' if count > 1 else ''}):\n{body}"
        ) from None


def sweep_recipe(recipe: Recipe, spec: SweepFile, source: str) -> Recipe:
    """The base recipe with the sweep's metric and direction (they become early stopping's)."""
    updates = {}
    if spec.metric is not None:
        updates["metric"] = spec.metric
    if spec.direction != "auto":
        updates["mode"] = spec.direction
    if not updates:
        return recipe
    data = recipe.to_yaml_dict()
    data["early_stopping"].update(updates)
    try:
        return validate_recipe(data, source="recipe")
    except RecipeError as error:
        problems = [line.strip().removeprefix("- recipe: ") for line in str(error).splitlines()[1:]]
        raise SweepError(
            f"{source}: metric/direction: they do not fit the recipe: {'; '.join(problems)}"
        ) from None


def trial_recipe(base: Recipe, params: dict[str, Any], run_dir: Path | None, source: str) -> Recipe:
    """The base recipe with the trial's values set (as command-line overrides would) and its run folder."""
    data = base.to_yaml_dict()
    provenance: dict[str, str] = {}
    for key, value in params.items():
        nested: Any = value
        for part in reversed(key.split(".")):
            nested = {part: nested}
        data = deep_merge(data, nested, source, provenance)
    data["output"]["dir"] = str(run_dir) if run_dir is not None else None
    return validate_recipe(data, provenance, source)


def check_space(base: Recipe, spec: SweepFile, source: str) -> None:
    """Every listed value (and both ends of every range) must make a valid recipe; report all that do not."""
    problems = []
    for key, dimension in spec.space.items():
        values = dimension.probes() if isinstance(dimension, RangeSpec) else dimension
        for value in values:
            try:
                trial_recipe(base, {key: value}, None, source)
            except RecipeError as error:
                reason = "; ".join(
                    line.strip().removeprefix("- ").removeprefix(f"{source}: ")
                    for line in str(error).splitlines()[1:]
                )
                problems.append(f"space.{key}: value {value!r} does not make a valid recipe: {reason}")
    if problems:
        body = "\n".join(f"  - {source}: {line}" for line in problems)
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        raise SweepError(f"sweep file does not fit the recipe ({count}):\n{body}")


# ---------------------------------------------------------------------------------------------
# Optuna: study, sampler, suggestions, pruning


def suggest(trial: optuna.Trial, key: str, dimension: Any) -> Any:
    """Draw one value of a search-space dimension; returns the recipe value."""
    if isinstance(dimension, RangeSpec):
        low, high = dimension.bounds
        if dimension.kind == "integer":
            return trial.suggest_int(key, int(low), int(high), step=int(dimension.step or 1))
        return trial.suggest_float(key, low, high, log=dimension.kind == "log_uniform", step=dimension.step)
    choices = {label(v): v for v in dimension}
    return choices[trial.suggest_categorical(key, list(choices))]


def trial_seed(seed: int, number: int) -> int:
    """The sampler seed of trial `number`: decorrelated from its neighbours', fixed by (seed, number)."""
    import numpy as np

    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


class TrialSeededSampler(BaseSampler):
    """A sampler made afresh for every trial, seeded by (sweep seed, trial number).

    One seeded sampler per process gives workers started together the same seed, and they would
    propose the same points. Trial numbers are unique across the workers of a study (the storage
    hands them out), so per-trial seeds differ between workers, and a single worker still draws the
    same sequence from the same seed. A resumed sweep goes on with new trial numbers, so new seeds.
    Nothing is lost by starting afresh: Optuna's samplers read what they learn (TPE's history)
    from the study at every trial.
    """

    def __init__(self, make: Callable[[int], BaseSampler], seed: int) -> None:
        self._make = make
        self._seed = seed
        self._sampler = make(seed)

    def before_trial(self, study, trial):  # Optuna calls it first for every trial, before any draw
        self._sampler = self._make(trial_seed(self._seed, trial.number))
        self._sampler.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self._sampler.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._sampler.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._sampler.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values):
        self._sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        pass  # each trial is seeded by its number already (Optuna reseeds for threaded n_jobs only)


def open_study(folder: Path, spec: SweepFile, greater_is_better: bool) -> optuna.Study:
    """Create or load the sweep's study in `<folder>/study.db` (heartbeats mark dead workers' trials failed)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # we say what happened to each trial ourselves
    with warnings.catch_warnings():  # heartbeats are marked experimental; they are what resume needs
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = optuna.storages.RDBStorage(
            f"sqlite:///{(folder / STORAGE_FILE).resolve()}",
            heartbeat_interval=HEARTBEAT_S,
            grace_period=GRACE_PERIOD_S,
        )
    study = optuna.create_study(
        storage=storage,
        study_name=STUDY_NAME,
        direction="maximize" if greater_is_better else "minimize",
        load_if_exists=True,
    )
    with warnings.catch_warnings():  # a worker that died: its `running` trial fails now, to be queued again
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    if spec.method == "tpe":
        study.sampler = TrialSeededSampler(lambda seed: optuna.samplers.TPESampler(seed=seed), spec.seed)
    else:  # grid trials are enqueued with fixed values; the sampler never draws for them
        study.sampler = TrialSeededSampler(lambda seed: optuna.samplers.RandomSampler(seed=seed), spec.seed)
    pruning = spec.pruning
    study.pruner = (
        optuna.pruners.MedianPruner(
            n_startup_trials=pruning.startup_trials, n_warmup_steps=pruning.warmup_evaluations
        )
        if pruning.enabled
        else optuna.pruners.NopPruner()
    )
    return study


def enqueue_pending(study: optuna.Study, spec: SweepFile) -> int:
    """Queue grid combinations not yet tried and trials that were interrupted; returns the queue length.

    An interrupted trial (Ctrl-C, a killed worker) failed without an `error` note: it runs again.
    A trial that failed for a reason of its own (an invalid combination, a diverged loss) does not.
    """
    from optuna.trial import TrialState

    def params_of(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
        # a queued trial holds its values as `fixed_params` until it runs
        return trial.system_attrs.get("fixed_params", trial.params)

    def key(params: dict[str, Any]) -> str:
        return json.dumps(params, sort_keys=True)

    trials = study.get_trials(deepcopy=False)
    busy = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.WAITING, TrialState.RUNNING)
    taken = {key(params_of(t)) for t in trials if t.state in busy or "error" in t.user_attrs}
    pending: list[dict[str, Any]] = []
    if spec.method == "grid":
        grid = {k: [label(v) for v in values] for k, values in spec.grid().items()}
        pending = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())][: spec.budget()]
    pending += [t.params for t in trials if t.state == TrialState.FAIL]
    for params in pending:
        if params and key(params) not in taken:
            study.enqueue_trial(params, skip_if_exists=False)
            taken.add(key(params))
    return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def finished_count(study: optuna.Study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


class OptunaPruning(TrainerCallback):
    """Report the watched metric to an Optuna trial at each evaluation; stop the run when it says prune.

    Steps reported to Optuna are evaluation counts (1, 2, ...), so trials with different batch
    sizes are compared after the same number of evaluations. The evaluations before and after
    training are not reported.
    """

    def __init__(self, trial: optuna.Trial, metric: str) -> None:
        self.trial = trial
        self.metric = metric
        self.evaluations = 0
        self.training = False
        self.pruned_at: int | None = None
        self.last_value: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.training = True

    def on_train_end(self, args, state, control, **kwargs):
        self.training = False

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        value = (metrics or {}).get(EVAL_PREFIX + self.metric)
        if not self.training or state.global_step == 0 or value is None:
            return
        self.evaluations += 1
        self.last_value = float(value)
        self.trial.report(self.last_value, step=self.evaluations)
        if self.trial.should_prune():
            self.pruned_at = state.global_step
            control.should_training_stop = True


# ---------------------------------------------------------------------------------------------
# Running a sweep


@dataclass
class SweepRun:
    folder: Path
    recipe: Recipe  # the base recipe (with the sweep's metric)
    spec: SweepFile
    source: str  # where the sweep file came from, for messages


def start_sweep(
    recipe: Recipe, spec: SweepFile, output: Path | None, source: str, recipe_source: str | None = None
) -> SweepRun:
    """Check the sweep against the recipe and create its folder (or reopen it to resume)."""
    from finetune.runs.folders import default_run_dir, write_recipe

    base = sweep_recipe(recipe, spec, source)
    check_space(base, spec, source)
    folder = output or default_run_dir(
        base.model_copy(update={"name": f"sweep-{base.name or 'recipe'}-{spec.name or 'sweep'}"})
    )
    if folder.exists():
        check_same_sweep(folder, base, spec)
    else:
        folder.mkdir(parents=True)
        write_recipe(folder, base, recipe_source)
        (folder / SWEEP_FILE).write_text(
            f"# Resolved sweep file (from {source}). Resume: finetune sweep --resume {folder}\n"
            + yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False),
            encoding="utf-8",
        )
    return SweepRun(folder=folder, recipe=base, spec=spec, source=source)


def reopen_sweep(folder: Path) -> SweepRun:
    """The sweep stored in a sweep folder, for `finetune sweep --resume DIR`."""
    from finetune.recipe import load_recipe

    if not (folder / STORAGE_FILE).is_file() or not (folder / SWEEP_FILE).is_file():
        raise SweepError(f"--resume {folder}: not a sweep folder (no {STORAGE_FILE} and {SWEEP_FILE} in it)")
    spec = load_sweep_file(folder / SWEEP_FILE)
    recipe = load_recipe(folder / BASE_RECIPE_FILE)
    return SweepRun(folder=folder, recipe=recipe, spec=spec, source=str(folder / SWEEP_FILE))


def check_same_sweep(folder: Path, recipe: Recipe, spec: SweepFile) -> None:
    """An existing folder can only be continued by the same recipe and sweep; never overwritten."""
    from finetune.recipe import load_recipe

    if not (folder / STORAGE_FILE).is_file():
        raise SweepError(
            f"--output {folder} exists and is not a sweep folder; finetune never overwrites it. "
            f"Choose a new folder."
        )
    stored = load_recipe(folder / BASE_RECIPE_FILE).to_yaml_dict()
    stored_spec = load_sweep_file(folder / SWEEP_FILE).model_dump(mode="json")
    changed = _differences(stored, recipe.to_yaml_dict()) + [
        f"sweep {k}" for k in _differences(stored_spec, spec.model_dump(mode="json"))
    ]
    if changed:
        raise SweepError(
            f"--output {folder} holds a sweep with a different recipe or sweep file (changed: "
            f"{', '.join(changed[:8])}). Resume it with `finetune sweep --resume {folder}`, or choose a new folder."
        )


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [d for k in keys for d in _differences(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [prefix.rstrip(".")]


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
