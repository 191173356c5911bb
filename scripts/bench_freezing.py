"""Benchmark the shipped layer recipes against full fine-tuning on MiniLM and SST-2.

    python scripts/bench_freezing.py              # 4,000 SST-2 rows, 3 epochs, full dev set, 3 rounds
                                                  # (~20 min a round on 2 quiet cores)
    python scripts/bench_freezing.py --rounds 1   # one round: direction only
    python scripts/bench_freezing.py --quick      # 256 rows, 8 steps: checks the script end to end

Each recipe trains in its own process (so peak memory is its own) with the same data, epochs,
batch size and seed; only what the recipe changes differs. Training throughput counts the time
inside optimizer steps (forward, backward, optimizer), not evaluation or start-up, so the saving
of a shorter backward pass shows. Every round runs every recipe, in an order that rotates from
round to round (so drift in machine load spreads over all of them); the table reports the median
samples/s with its min-max spread. Accuracy is the same in every round (same seed, same data); a
round that disagrees is reported. Writes benchmarks/freezing.md and benchmarks/freezing.json
(--quick writes benchmarks/freezing-quick.*).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GLUE = REPO.parent / "shared" / "data" / "glue"
RECIPES = [
    "base",
    "freeze-embeddings",
    "freeze-bottom-half",
    "top-2-only",
    "gradual-unfreeze",
    "llrd",
    "layernorm-only",
    "reinit-top-2",
]
FULL = {"train_rows": 4000, "eval_rows": None, "epochs": 3, "max_steps": None}
QUICK = {"train_rows": 256, "eval_rows": 128, "epochs": 2, "max_steps": 8}


def overrides(settings: dict, run_dir: Path) -> list[str]:
    """The same data, budget and seed for every recipe (SST-2 as recipes/glue-sst2.yaml reads it)."""
    values = [
        f"data.dir={GLUE}",
        "data.train=SST-2/train.tsv",
        "data.validation=SST-2/dev.tsv",
        "data.text=sentence",
        "data.label=label",
        "data.max_length=66",
        f"data.max_train_samples={settings['train_rows']}",
        f"training.epochs={settings['epochs']}",
        "training.batch_size=32",
        "training.seed=42",
        "evaluation.every=epoch",
        "evaluation.before_training=false",
        "early_stopping.metric=accuracy",
        "early_stopping.patience=10",  # every recipe trains the same number of steps
        f"output.dir={run_dir}",
        "output.save_model=false",
        "output.plots=false",
    ]
    if settings["eval_rows"]:
        values.append(f"data.max_eval_samples={settings['eval_rows']}")
    if settings["max_steps"]:
        values += [f"training.max_steps={settings['max_steps']}", f"evaluation.every={settings['max_steps']}"]
    return values


def run_one(name: str, settings: dict, run_dir: Path) -> dict:
    """Train one recipe in this process; return what the table needs."""
    from transformers import TrainerCallback

    from finetune.recipe import load_recipe
    from finetune.training.run import train

    class StepTimer(TrainerCallback):
        """Wall time inside optimizer steps only (forward, backward, clipping, optimizer step)."""

        def __init__(self) -> None:
            self.seconds, self.steps, self.started = 0.0, 0, None

        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds += time.perf_counter() - self.started
            self.steps += 1

    timer = StepTimer()
    recipe = load_recipe(name, overrides(settings, run_dir))
    result = train(recipe, callbacks=[timer])
    results = result.results
    batch = recipe.training.batch_size * recipe.training.gradient_accumulation_steps
    return {
        "recipe": name,
        "trainable_parameters": results["trainable_parameters"],
        "trainable_at_end": sum(p.numel() for p in result.trainer.model.parameters() if p.requires_grad),
        "total_parameters": results["total_parameters"],
        "steps": timer.steps,
        "step_seconds": round(timer.seconds, 2),
        "train_samples_per_second": round(timer.steps * batch / timer.seconds, 2),
        "peak_rss_mb": results["peak_rss_mb"],
        "peak_gpu_memory_mb": results.get("peak_gpu_memory_mb"),
        "accuracy": results["final_metrics"].get("accuracy"),
        "best_step": results["best"]["step"],
        "unfrozen_during_training": results.get("unfrozen_during_training", []),
    }


def combine_rounds(runs: list[dict]) -> dict:
    """One row from a recipe's runs over the rounds: median samples/s and its spread, the rest from
    the first run (deterministic: same seed and data), peak memory the largest seen."""
    speeds = [r["train_samples_per_second"] for r in runs]
    row = dict(runs[0])
    row.update(
        train_samples_per_second=statistics.median(speeds),
        samples_per_second_rounds=speeds,
        peak_rss_mb=max(r["peak_rss_mb"] for r in runs),
        accuracy_rounds=[r["accuracy"] for r in runs],
    )
    return row


def table(rows: list[dict]) -> str:
    """Markdown table, each recipe against full fine-tuning (`base`)."""
    full = next(r for r in rows if r["recipe"] == "base")
    lines = [
        "| recipe | trainable parameters | train samples/s (median [min-max]) | vs full | peak RSS (MB) "
        "| val accuracy | vs full |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        share = row["trainable_at_end"] / row["total_parameters"]
        trainable = f"{row['trainable_at_end']:,} ({share:.1%})"
        if row["trainable_at_end"] != row["trainable_parameters"]:  # gradual unfreezing
            trainable = f"{row['trainable_parameters']:,} -> {trainable}"
        speed = row["train_samples_per_second"] / full["train_samples_per_second"]
        delta = (row["accuracy"] - full["accuracy"]) * 100
        name = "base (full fine-tuning)" if row["recipe"] == "base" else row["recipe"]
        rounds = row.get("samples_per_second_rounds", [row["train_samples_per_second"]])
        spread = f" [{min(rounds):.1f}-{max(rounds):.1f}]" if len(rounds) > 1 else ""
        accuracy = f"{row['accuracy']:.4f}"
        if len(set(row.get("accuracy_rounds", [row["accuracy"]]))) > 1:  # should not happen: same seed
            accuracy += " (rounds: " + ", ".join(f"{a:.4f}" for a in row["accuracy_rounds"]) + ")"
        lines.append(
            f"| {name} | {trainable} | {row['train_samples_per_second']:.1f}{spread} "
            f"| {speed:.2f}x | {row['peak_rss_mb']:,.0f} | {accuracy} | {delta:+.1f} pt |"
        )
    return "\n".join(lines)


def describe_machine() -> str:
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU, {os.cpu_count()} cores"
    return f"{device}; {platform.platform()}; Python {platform.python_version()}; torch {torch.__version__}"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny budget: check the script runs")
    parser.add_argument("--recipes", nargs="*", default=RECIPES, help="recipes to run (base is always run)")
    parser.add_argument(
        "--rounds", type=int, default=None, help="rounds of every recipe (default 3; quick 1)"
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one recipe, print its JSON
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    settings = QUICK if args.quick else FULL
    if args.one:
        print("BENCH-RESULT " + json.dumps(run_one(args.one, settings, Path(args.run_dir))), flush=True)
        return 0
    if not GLUE.is_dir():
        print(f"GLUE data not found at {GLUE}", file=sys.stderr)
        return 1

    root = REPO / "runs" / f"bench-freezing-{time.strftime('%Y%m%d-%H%M%S')}"
    names = ["base", *(n for n in args.recipes if n != "base")]
    rounds = args.rounds or (1 if args.quick else 3)
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for round_index in range(rounds):
        order = names[round_index % len(names) :] + names[: round_index % len(names)]
        for index, name in enumerate(order, 1):
            print(f"[round {round_index + 1}/{rounds}, {index}/{len(order)}] {name} ...", flush=True)
            run_dir = root / f"round-{round_index + 1}" / name
            command = [sys.executable, __file__, "--one", name, "--run-dir", str(run_dir)]
            output = subprocess.run(
                [*command, *(["--quick"] if args.quick else [])],
                capture_output=True,
                text=True,
                env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
            )
            found = [line for line in output.stdout.splitlines() if line.startswith("BENCH-RESULT ")]
            if output.returncode != 0 or not found:
                print(output.stdout[-3000:], output.stderr[-3000:], sep="\n", file=sys.stderr)
                return 1
            row = json.loads(found[-1].removeprefix("BENCH-RESULT "))
            runs[name].append(row)
            print(
                f"    {row['train_samples_per_second']:.1f} samples/s, accuracy {row['accuracy']:.4f}, "
                f"peak RSS {row['peak_rss_mb']:,.0f} MB",
                flush=True,
            )
    rows = [combine_rounds(runs[name]) for name in names]

    text = table(rows)
    print("\n" + text)
    suffix = "-quick" if args.quick else ""
    out = REPO / "benchmarks"
    out.mkdir(exist_ok=True)
    budget = (
        f"{settings['train_rows']:,} SST-2 training rows (seed 42), "
        + (f"{settings['max_steps']} steps" if settings["max_steps"] else f"{settings['epochs']} epochs")
        + ", batch 32, "
        + (
            f"{settings['eval_rows']} dev rows"
            if settings["eval_rows"]
            else "the full SST-2 dev set (872 rows)"
        )
    )
    command = "python scripts/bench_freezing.py " + " ".join(sys.argv[1:])
    (out / f"freezing{suffix}.md").write_text(
        "# Layer recipes vs full fine-tuning (MiniLM-L6, SST-2)\n\n"
        f"`{command.strip()}`: {budget}; {rounds} round{'s' if rounds > 1 else ''}, the order rotating "
        "from round to round. Each recipe in its own process; train samples/s counts time inside "
        "optimizer steps only (no evaluation, no start-up), median over the rounds with the min-max "
        "spread; peak RSS is the process's peak resident memory (largest over the rounds); "
        "accuracy is that of the restored best weights on the dev rows.\n\n"
        f"Machine: {describe_machine()}.\n\n{text}\n"
    )
    (out / f"freezing{suffix}.json").write_text(
        json.dumps(
            {
                "settings": settings,
                "rounds": rounds,
                "machine": describe_machine(),
                "rows": rows,
                "runs": runs,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote benchmarks/freezing{suffix}.md and .json")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
