"""The Optuna study of a sweep: its storage, samplers, suggested values, queued trials and pruning.

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
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.samplers import BaseSampler
from transformers import TrainerCallback

from finetune.recipe.sweep import RangeSpec, SweepFile
from finetune.search.sweep_folder import STORAGE_FILE
from finetune.search.sweep_report import label

STUDY_NAME = "finetune-sweep"
EVAL_PREFIX = "eval_"
HEARTBEAT_S = 60  # a running trial's worker writes a heartbeat this often
GRACE_PERIOD_S = 180  # a running trial whose heartbeat is older counts as dead: failed, then queued again


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
