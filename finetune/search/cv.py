"""`finetune cv`: K-fold cross-validation on the training data, repeated over seeds.

Small data sets (MRPC, RTE) give results that move by points from one seed to the next
(Dodge et al., 2020, "Fine-Tuning Pretrained Language Models: Weight Initializations, Data Orders,
and Early Stopping"; Mosbach et al., 2021): one run says little. `finetune cv` trains one ordinary
run per fold and seed and reports the mean and standard deviation of the held-out metric.

- **Folds.** The recipe's training data (after `max_train_samples`) is split into K folds,
  stratified by label for classification (scikit-learn's `StratifiedKFold`), shuffled K-fold for
  regression; each fold is held out once while the run trains on the others. The fold files are
  written as JSON Lines into the cv folder and each run's recipe points at them, so every run folder
  reproduces with `finetune train <run>/recipe.yaml output.dir=...`. The recipe's own validation set
  is not used (when it is a held-out share of train, that share stays out).
- **Selection never sees the held-out fold.** Early stopping and the choice of the best weights
  are model selection: done on the held-out fold, the best of many evaluations on it is an
  optimistic score. Each run's recipe therefore names only its training folds, and the run
  validates on a seeded, stratified `data.validation_fraction` of them (the split every recipe
  without a validation file gets: `split_validation` in data/splits.py). After training, the run's final
  weights (the restored best ones) are scored once on the held-out fold; that is the reported value.
- **Seeds.** Each seed reshuffles the folds and re-seeds training (head initialisation, data order,
  dropout). `--folds 1` skips the folds: the recipe's own train/validation split, once per seed,
  reporting the best validation value as `finetune train` does (selected on the same set).

    <cv>/
      data/seed42/fold1/{train,heldout}.jsonl
      seed42-fold1/ ...          one ordinary run folder per seed and fold (results.json: `heldout`)
      results.csv, results.md    every run
      summary.json               mean and std per seed and overall
      cv.png                     the metric of every run, per seed, with mean +- std

The parts: planning the runs and writing the folds as files (`search/cv_folds.py`), the table,
summary and plot (`search/cv_report.py`); this module runs the folds and scores the held-out ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from finetune.errors import FinetuneError
from finetune.recipe import Recipe
from finetune.search.cv_folds import plan_runs, run_recipe
from finetune.search.cv_report import CVRun, CVSummary, write_report

if TYPE_CHECKING:
    from finetune.training.run import RunResult

HELDOUT_PREFIX = "heldout_"


def create_cv_dir(output: Path | None, recipe: Recipe) -> Path:
    from finetune.runs.folders import default_run_dir

    folder = output or default_run_dir(recipe.model_copy(update={"name": f"cv-{recipe.name or 'recipe'}"}))
    if folder.exists():
        raise FinetuneError(f"cv: --output {folder} already exists; finetune never overwrites it")
    folder.mkdir(parents=True)
    return folder


def heldout_metrics(result: RunResult, recipe: Recipe, path: Path) -> dict[str, float]:
    """The run's final weights (the restored best ones) scored once on the held-out fold.

    The file is read and its labels encoded as the run read its training data (data/files.py, data/columns.py, data/labels.py), with the
    run's label names; `Trainer.predict` scores it with the run's own metric function. Unlike
    `evaluate`, it reports to no callback: early stopping never sees these metrics.
    """
    from finetune.data.columns import canonical_columns
    from finetune.data.files import read_file
    from finetune.data.labels import encode_labels, float_targets
    from finetune.data.windows import encode_texts, window_stride

    spec, trainer = recipe.data, result.trainer
    dataset = canonical_columns(read_file(spec, path, "heldout"), spec, str(path))
    names = result.results["labels"]
    if names is None:
        dataset = float_targets(dataset, "heldout", str(path))
    else:
        dataset = encode_labels(dataset, names, "heldout", str(path))
    encoded = encode_texts(dataset, trainer.processing_class, spec.max_length, window_stride(spec), "heldout")
    output = trainer.predict(encoded, metric_key_prefix="heldout")  # windows: scored per document
    noise = ("runtime", "per_second", "preparation_time")
    return {k.removeprefix(HELDOUT_PREFIX): v for k, v in output.metrics.items() if not k.endswith(noise)}


def cross_validate(
    recipe: Recipe, folds: int = 5, seeds: list[int] | None = None, output: Path | None = None
) -> tuple[CVSummary, Path]:
    """Train one run per seed and fold; write the table, summary and plot; return the summary."""
    from finetune.distributed.processes import say
    from finetune.runs.folders import write_results
    from finetune.training.callbacks import format_metrics
    from finetune.training.run import train

    seeds = seeds if seeds is not None else [recipe.training.seed]
    plans = plan_runs(recipe, folds, seeds)  # every check first: a refused cv leaves no folder
    folder = create_cv_dir(output, recipe)
    metric = recipe.early_stopping.watched_metric(recipe.model.task)
    summary = CVSummary(metric=metric, folds=folds, seeds=seeds)
    for number, plan in enumerate(plans, start=1):
        seed, fold = plan["seed"], plan["fold"]
        where = f"seed {seed}" + (f", fold {fold} of {folds}" if fold else "")
        say(f"\n=== cv run {number} of {len(plans)}: {where}")
        run, heldout = run_recipe(recipe, plan, folder)
        result = train(run, source=f"{where} of cv {folder}")
        results, data = result.results, result.results.get("data", {})
        done = CVRun(
            seed=seed,
            fold=fold,
            value=results["best"]["value"],  # --folds 1: the recipe's validation set, as `train` reports it
            steps=results.get("steps"),
            train_size=data.get("train", 0),
            heldout_size=data.get("validation", 0),
            run_dir=result.run_dir,
        )
        if heldout is not None:  # with folds, that best value is the inner split's: selection, not the result
            scores = heldout_metrics(result, run, heldout)
            examples = len(plan["validation"])
            results["heldout"] = {"file": str(heldout), "examples": examples, "metrics": scores}
            write_results(result.run_dir, results)
            say(f"held-out fold ({examples} examples): {format_metrics(scores, prefix='')}")
            done.inner_value, done.inner_size = done.value, done.heldout_size
            done.value, done.heldout_size = scores.get(metric), examples
        summary.runs.append(done)
        result.trainer = None  # a finished run's model, optimizer and best weights: not kept through the next
        write_report(summary, folder)  # after every run: a stopped cv still shows what it has
    return summary, folder
