"""Accuracy against the plain Trainer: seeded, side by side, scored once on GLUE's dev files.

    python scripts/bench_accuracy.py                       # SST-2, MRPC, STS-B x 500 and 2,000 rows,
                                                           # 3 seeds, arms a b c (about an hour, 2 cores)
    python scripts/bench_accuracy.py --regimes 500 2000 full --seeds 5   # the full version (hours)
    python scripts/bench_accuracy.py --quick               # smoke test: 1 seed, 64 rows, minutes

Arms (each run is its own process; `--jobs 2` runs two at a time with one torch thread each):
  (a) `plain`: the Trainer script as the docs teach it (lr 5e-5, batch 32, 3 epochs, 10% warmup,
      weight decay 0.01), seeded before the model is built as run_glue.py is, trained on all of the
      training rows; its last weights are scored.
  (b) `default`: `finetune train` on a recipe that only says `extends: base` and names the data;
      validation is carved from the training rows (the recipe's default 10%), the restored best
      weights are scored once with `finetune evaluate` on the dev file.
  (c) `recommended`: the same with `extends: recommended` (README, "Accuracy: defaults and the plain Trainer").
  `restarts`: random restarts with early discarding (Dodge et al., 2020): `finetune sweep` of the
      recommended recipe over RESTARTS seeds (recipes/sweeps/restarts.sweep.yaml's settings: the
      first trial runs to the end, each later one is stopped at an evaluation where it is below the
      median of the earlier ones); the best trial on the validation split is scored once on dev.
More arms: a shipped recipe by name (`--arms plain default llrd small-data`: the data recipe
extends recipes/NAME.yaml), or base with overrides: `--arm NAME=key=value,key=value`
(e.g. `lr1e-4=optimizer.lr=1e-4`).

Training rows are a seeded sample of GLUE's train file, the same sample for every arm and seed;
the dev file is whole and never seen before the final score. Writes benchmarks/accuracy.md and
benchmarks/accuracy.json (`--out` elsewhere; `--quick` writes to a temporary folder).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GLUE = REPO.parent / "shared" / "data" / "glue"
SAMPLE_SEED = 13  # which training rows a regime takes; the same for every arm and seed
TASKS = {
    "sst2": {"folder": "SST-2", "text": "sentence", "pair": None, "label": "label", "metric": "accuracy"},
    "mrpc": {"folder": "MRPC", "text": "#1 String", "pair": "#2 String", "label": "Quality", "metric": "f1"},
    "stsb": {
        "folder": "STS-B",
        "text": "sentence1",
        "pair": "sentence2",
        "label": "score",
        "metric": "pearson",
    },
}
PLAIN = {"lr": 5e-5, "batch_size": 32, "epochs": 3, "warmup_ratio": 0.1, "weight_decay": 0.01}
ARMS = {"plain": None, "default": "base", "recommended": "recommended", "restarts": "recommended"}
RESTARTS = 4  # seeds started per restarts run: job seed s tries 100 s + 1, ..., 100 s + RESTARTS


# ---- data -----------------------------------------------------------------------------------------


def read_tsv(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    header = [c.strip() for c in rows[0]]
    return header, [r for r in rows[1:] if len(r) == len(header)]


def write_split(source: Path, target: Path, spec: dict, limit: int | None) -> int:
    """A clean TSV (text, [text_pair,] label) of `source`, the first `limit` rows of a seeded shuffle."""
    header, rows = read_tsv(source)
    columns = [spec["text"]] + ([spec["pair"]] if spec["pair"] else []) + [spec["label"]]
    names = ["text"] + (["text_pair"] if spec["pair"] else []) + ["label"]
    index = [header.index(c) for c in columns]
    if limit is not None:
        random.Random(SAMPLE_SEED).shuffle(rows)
        rows = rows[:limit]
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8") as handle:
        handle.write("\t".join(names) + "\n")
        handle.writelines("\t".join(r[i] for i in index) + "\n" for r in rows)
    return len(rows)


def prepare_data(glue: Path, work: Path, task: str, regime: str) -> Path:
    spec, folder = TASKS[task], work / "data" / f"{task}-{regime}"
    limit = None if regime == "full" else int(regime)
    if not (folder / "dev.tsv").is_file():
        write_split(glue / spec["folder"] / "train.tsv", folder / "train.tsv", spec, limit)
        write_split(glue / spec["folder"] / "dev.tsv", folder / "dev.tsv", spec, None)
    return folder


# ---- one run, in its own process ----------------------------------------------------------------


def plain_trainer(task: str, data: Path, seed: int, out: Path, max_length: int = 128) -> dict:
    """(a): the Trainer script of the docs' text-classification guide (offline metrics, no saving)."""
    import numpy as np
    from datasets import load_dataset
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    from finetune.model.loading import resolve_model_path

    files = {"train": str(data / "train.tsv"), "validation": str(data / "dev.tsv")}
    dataset = load_dataset(
        "csv", data_files=files, delimiter="\t", quoting=csv.QUOTE_NONE, keep_default_na=False
    )
    path, pair, regression = resolve_model_path("minilm-l6"), TASKS[task]["pair"], task == "stsb"
    tokenizer = AutoTokenizer.from_pretrained(path)

    def preprocess(examples):
        encoded = tokenizer(
            examples["text"], examples["text_pair"] if pair else None, truncation=True, max_length=max_length
        )
        encoded["labels"] = [float(v) for v in examples["label"]] if regression else examples["label"]
        return encoded

    tokenized = dataset.map(preprocess, batched=True, remove_columns=dataset["train"].column_names)
    set_seed(seed)  # before the new head is built, as run_glue.py does: the same seed, the same run
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1 if regression else 2)
    args = TrainingArguments(
        output_dir=str(out / "trainer"),
        learning_rate=PLAIN["lr"],
        per_device_train_batch_size=PLAIN["batch_size"],
        per_device_eval_batch_size=64,
        num_train_epochs=PLAIN["epochs"],
        weight_decay=PLAIN["weight_decay"],
        warmup_steps=PLAIN["warmup_ratio"],
        eval_strategy="no",
        save_strategy="no",
        seed=seed,
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=tokenized["train"],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer=tokenizer),
    )
    trainer.train()
    output = trainer.predict(tokenized["validation"])
    labels = output.label_ids
    if regression:
        predicted = output.predictions.reshape(-1)
        return {
            "pearson": float(pearsonr(predicted, labels)[0]),
            "spearman": float(spearmanr(predicted, labels)[0]),
        }
    predicted = np.argmax(output.predictions, axis=-1)
    return {"accuracy": float(accuracy_score(labels, predicted)), "f1": float(f1_score(labels, predicted))}


def recipe_text(task: str, data: Path, extends: str, seed: int, run_dir: Path) -> str:
    """The user's whole recipe: `extends` and the data, nothing else (the task for regression)."""
    pair = "  text_pair: text_pair\n" if TASKS[task]["pair"] else ""
    model = "model:\n  task: regression\n" if task == "stsb" else ""
    return (
        f"extends: {extends}\n{model}data:\n  dir: {data}\n  train: train.tsv\n  text: text\n{pair}"
        f"  label: label\ntraining:\n  seed: {seed}\noutput:\n  dir: {run_dir}\n  plots: false\n"
    )


def finetune_cli(*arguments: str) -> None:
    command = [sys.executable, "-m", "finetune.cli", *arguments]
    subprocess.run(
        command, check=True, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def finetune_run(task: str, data: Path, extends: str, overrides: list[str], seed: int, out: Path) -> dict:
    """(b)/(c): `finetune train` on the recipe, then `finetune evaluate` once on the dev file."""
    run_dir = out / "run"
    recipe = out / "recipe.yaml"
    out.mkdir(parents=True, exist_ok=True)
    recipe.write_text(recipe_text(task, data, extends, seed, run_dir), encoding="utf-8")
    finetune_cli("train", str(recipe), *overrides)
    return scored_on_dev(run_dir, data, out)


def scored_on_dev(run_dir: Path, data: Path, out: Path) -> dict:
    """`finetune evaluate` of a run folder, once, on the dev file; the run's own facts beside it."""
    finetune_cli("evaluate", str(run_dir), "--data", str(data / "dev.tsv"), "--output-dir", str(out / "dev"))
    metrics = json.loads((out / "dev" / "evaluation.json").read_text(encoding="utf-8"))["metrics"]
    results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    return {
        **{k: metrics[k] for k in ("accuracy", "f1", "pearson", "spearman") if k in metrics},
        "epochs": results.get("epochs"),
        "steps": results.get("steps"),
        "lr": read_lr(run_dir),
        "warning": (results.get("learning_check") or {}).get("verdict"),
    }


def restarts_run(task: str, data: Path, extends: str, overrides: list[str], seed: int, out: Path) -> dict:
    """`restarts`: a sweep over RESTARTS training seeds with early discarding, the best trial on the
    validation split scored once on the dev file."""
    import yaml

    out.mkdir(parents=True, exist_ok=True)
    recipe = out / "recipe.yaml"
    recipe.write_text(recipe_text(task, data, extends, seed, out / "unused"), encoding="utf-8")
    shipped = yaml.safe_load(
        (REPO / "recipes" / "sweeps" / "restarts.sweep.yaml").read_text(encoding="utf-8")
    )
    shipped["space"] = {"training.seed": [100 * seed + i for i in range(1, RESTARTS + 1)]}
    sweep = out / "restarts.sweep.yaml"
    sweep.write_text(yaml.safe_dump(shipped), encoding="utf-8")
    finetune_cli("sweep", str(recipe), str(sweep), "--output", str(out / "sweep"), *overrides)
    with (out / "sweep" / "results.csv").open(encoding="utf-8") as handle:
        trials = list(csv.DictReader(handle))
    best = next(row for row in trials if row["state"] == "complete")  # best first
    run_dir = out / "sweep" / best["run_dir"]  # relative to the sweep folder
    return {**scored_on_dev(run_dir, data, out), "trials": {row["trial"]: row["state"] for row in trials}}


def read_lr(run_dir: Path) -> float | None:
    import yaml

    return yaml.safe_load((run_dir / "recipe.yaml").read_text(encoding="utf-8"))["optimizer"]["lr"]


def worker(job: dict) -> dict:
    """One (task, regime, arm, seed), in this process; what it prints last is its result."""
    out, data, started = Path(job["out"]), Path(job["data"]), time.time()
    if job["arm"] == "plain":
        result = plain_trainer(job["task"], data, job["seed"], out)
    elif job["arm"] == "restarts":
        result = restarts_run(job["task"], data, job["extends"], job["overrides"], job["seed"], out)
    else:
        result = finetune_run(job["task"], data, job["extends"], job["overrides"], job["seed"], out)
    return {**job, **result, "seconds": round(time.time() - started, 1)}


def launch(job: dict, threads: int) -> dict:
    """Run `worker(job)` in a fresh process (own memory, own thread count)."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "TRANSFORMERS_VERBOSITY": "error",
    }
    command = [sys.executable, __file__, "--worker", json.dumps(job)]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stderr[-3000:], file=sys.stderr)
        return {**job, "error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(
        f"  {job['task']} {job['regime']} {job['arm']} seed {job['seed']}: {score_line(result)}", flush=True
    )
    return result


def score_line(result: dict) -> str:
    metric = TASKS[result["task"]]["metric"]
    extra = f", lr {result['lr']:g}, {result['epochs']} epochs" if result.get("lr") else ""
    return f"{metric} {result.get(metric, float('nan')):.4f} ({result['seconds']:.0f} s{extra})"


# ---- the table --------------------------------------------------------------------------------------


def mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def table_line(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def summarize(results: list[dict], arms: list[str]) -> tuple[list[str], list[dict]]:
    """The markdown table (one row per task and size) and the statistics behind it."""
    header = ["task (metric)", "train rows", *(f"({chr(97 + i)}) {arm}" for i, arm in enumerate(arms))]
    header += [f"{arm} - {arms[0]}" for arm in arms[1:]] + ["learned-nothing warnings", "minutes per seed"]
    lines, rows = [table_line(header), table_line(["---"] * len(header))], []
    for task, regime in dict.fromkeys((r["task"], r["regime"]) for r in results):
        row = summarize_row(results, arms, task, regime)
        lines.append(table_line(row.pop("cells")))
        rows.append(row)
    return lines, rows


def summarize_row(results: list[dict], arms: list[str], task: str, regime: str) -> dict:
    metric, stats, minutes, warned = TASKS[task]["metric"], {}, [], []
    for arm in arms:
        runs = [r for r in results if (r["task"], r["regime"], r["arm"]) == (task, regime, arm)]
        stats[arm] = mean_std([100 * r[metric] for r in runs if metric in r])
        minutes.append(f"{statistics.mean(r['seconds'] for r in runs) / 60:.1f}" if runs else "")
        if "warning" in (runs[0] if runs else {}):
            warned.append(f"{arm} {sum(r['warning'] == 'learned nothing' for r in runs)}/{len(runs)}")
    cells = [f"{task} ({metric})", regime, *(f"{stats[arm][0]:.2f} ± {stats[arm][1]:.2f}" for arm in arms)]
    cells += [f"{stats[arm][0] - stats[arms[0]][0]:+.2f}" for arm in arms[1:]]
    cells += [", ".join(warned), " / ".join(minutes)]
    return {"task": task, "regime": regime, "metric": metric, "stats": stats, "cells": cells}


def averages(rows: list[dict], arms: list[str]) -> list[str]:
    lines = []
    for arm in arms[1:]:
        gaps = [row["stats"][arm][0] - row["stats"][arms[0]][0] for row in rows]
        below = [
            f"{row['task']} {row['regime']}"
            for row in rows
            if row["stats"][arm][0] < row["stats"][arms[0]][0] - row["stats"][arms[0]][1]
        ]
        lines.append(
            f"- {arm} - {arms[0]}: {statistics.mean(gaps):+.2f} points on average over tasks and regimes; "
            f"below {arms[0]} by more than its std: {', '.join(below) or 'none'}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=["sst2", "mrpc", "stsb"])
    parser.add_argument("--regimes", nargs="+", default=["500", "2000"], help="training rows, or `full`")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--arms",
        nargs="+",
        default=list(ARMS),
        help="plain, default, recommended, a shipped recipe's name, or --arm names",
    )
    parser.add_argument(
        "--arm", action="append", default=[], metavar="NAME=OVERRIDES", help="extra arm: base + overrides"
    )
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (each with 2/jobs torch threads)")
    parser.add_argument("--data", type=Path, default=GLUE)
    parser.add_argument("--out", type=Path, default=None, help="where the table goes (default benchmarks/)")
    parser.add_argument(
        "--name",
        default=None,
        help="file name of the table (benchmarks/NAME.md; default accuracy, or --render's)",
    )
    parser.add_argument("--quick", action="store_true", help="1 seed, 64 rows: a smoke test")
    parser.add_argument("--render", type=Path, help="re-draw NAME.md beside a saved NAME.json, run nothing")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    if args.render:
        report = json.loads(args.render.read_text(encoding="utf-8"))
        return write_report(report, args.render.parent, args.name or args.render.stem, save_json=False)
    if not (args.data / "SST-2" / "train.tsv").is_file():
        print(f"GLUE not found under {args.data}; pass --data", file=sys.stderr)
        return 1
    regimes, seeds = (["64"], 1) if args.quick else (args.regimes, args.seeds)
    work = Path(tempfile.mkdtemp(prefix="bench-accuracy-"))
    jobs = plan_jobs(args, work, regimes, seeds)
    started = time.time()
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda job: launch(job, max(1, 2 // args.jobs)), jobs))
    report = {
        "command": shlex.join(
            ["python", "scripts/bench_accuracy.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "minutes": round((time.time() - started) / 60),
        "jobs": args.jobs,
        "seeds": seeds,
        "arms": args.arms,
        "results": results,
    }
    return write_report(
        report, args.out or (work if args.quick else REPO / "benchmarks"), args.name or "accuracy"
    )


def plan_jobs(args: argparse.Namespace, work: Path, regimes: list[str], seeds: int) -> list[dict]:
    """One job per task, size, seed and arm; the data of each task and size written once."""
    extra = {name: spec.split(",") for name, _, spec in (a.partition("=") for a in args.arm)}
    jobs = []
    for task in args.tasks:
        for regime in regimes:
            data = prepare_data(args.data, work, task, regime)
            for seed in range(seeds):
                for arm in args.arms:
                    folder = work / "runs" / f"{task}-{regime}-{arm}-{seed}"
                    overrides = [o for o in extra.get(arm, []) if o]
                    jobs.append(
                        {
                            "task": task,
                            "regime": regime,
                            "arm": arm,
                            "seed": seed,
                            "data": str(data),
                            "out": str(folder),
                            "extends": arm_recipe(arm),
                            "overrides": overrides,
                        }
                    )
    return jobs


def arm_recipe(arm: str) -> str:
    """The recipe an arm's data recipe extends: its own for a, b, c, a shipped recipe's name, else base."""
    if arm in ARMS:
        return ARMS[arm] or "base"
    return arm if (REPO / "recipes" / f"{arm}.yaml").is_file() else "base"


def write_report(report: dict, out: Path, name: str, save_json: bool = True) -> int:
    """Print the table and write NAME.md, and NAME.json unless re-drawing one (--render reads it)."""
    results, arms = report["results"], report["arms"]
    failed = [r for r in results if "error" in r]
    lines, rows = summarize([r for r in results if "error" not in r], arms)
    text = "\n".join(
        [
            f"# Accuracy against the plain Trainer (MiniLM-L6, GLUE dev, {report['seeds']} seeds)",
            "",
            f"`{report['command']}`: {report['minutes']} min with {report['jobs']} runs at a time, "
            "each scored once on the whole dev file; mean ± std over seeds, in points (x100).",
            "",
            *lines,
            "",
            *averages(rows, arms),
            *(
                f"- failed: {r['task']} {r['regime']} {r['arm']} seed {r['seed']}: {r['error']}"
                for r in failed
            ),
            "",
        ]
    )
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.md").write_text(text, encoding="utf-8")
    if save_json:
        (out / f"{name}.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(f"wrote {out / (name + '.md')}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
