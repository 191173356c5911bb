"""Benchmark: the shipped schedule and regularization recipes against base, on MiniLM + GLUE MRPC.

    python scripts/bench_regularization.py            # full: 3 seeds, all of MRPC (~400k training
                                                      # examples in all: 2-4 h on 2 quiet CPU cores)
    python scripts/bench_regularization.py --quick    # smoke test: 1 seed, 64 rows, 2 epochs (minutes)

Every recipe runs with the same data and budget (3 epochs, batch 16, early stopping on F1) except
`small-data`, which keeps its own longer run (more epochs is part of that recipe). A second table
repeats base and the regularizers on 500 training rows, the regime they are meant for. Reported:
validation F1 and accuracy of the weights each run ends with (restored best, or SWA), mean and
standard deviation over seeds, epochs trained and training time. Writes
`benchmarks/regularization.md`, `.json` and `regularization_lr.png` (each recipe's LR over its MRPC
run); `--quick` writes to a temporary folder unless `--out` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from finetune.recipe import Recipe, load_recipe  # noqa: E402
from finetune.schedules.plot import run_length, schedule_curves  # noqa: E402

RECIPES = ["base", "cosine", "one-cycle", "step-decay", "warm-restarts", "l2-sp", "rdrop", "small-data"]
SMALL_DATA_RECIPES = ["base", "l2-sp", "rdrop", "small-data"]
OWN_BUDGET = ("small-data",)  # keep their own epochs / batch size / patience
GLUE = REPO.parent / "shared" / "data" / "glue"


def majority_scores(dev: Path) -> tuple[float, float]:
    """F1 and accuracy of answering "paraphrase" (label 1) for every pair of MRPC's dev file."""
    rows = dev.read_text(encoding="utf-8-sig").splitlines()[1:]
    labels = [line.split("\t", 1)[0] for line in rows if line.strip()]
    positives = labels.count("1")
    return 2 * positives / (2 * positives + len(labels) - positives), positives / len(labels)


def mrpc_overrides(
    glue: Path, seed: int, epochs: float, train_rows: int | None, eval_rows: int | None
) -> list:
    """Overrides that put a recipe on MRPC (as recipes/glue-mrpc.yaml does) with a fixed budget."""
    overrides = [
        f"data.dir={glue}",
        "data.train=MRPC/train.tsv",
        "data.validation=MRPC/dev.tsv",
        "data.text='#1 String'",
        "data.text_pair='#2 String'",
        "data.label=Quality",
        "early_stopping.metric=f1",
        f"training.seed={seed}",
        "output.save_model=false",
        "output.plots=false",
    ]
    if "checkpoints" in Recipe.model_fields:  # no checkpoint writing in a benchmark
        overrides.append("checkpoints.every_epoch=false")
    if train_rows is not None:
        overrides.append(f"data.max_train_samples={train_rows}")
    if eval_rows is not None:
        overrides.append(f"data.max_eval_samples={eval_rows}")
    return overrides


def budget(name: str, epochs: float, quick: bool) -> list[str]:
    if name in OWN_BUDGET and not quick:
        return []
    return [f"training.epochs={epochs}", "training.batch_size=16"]


def run_one(name: str, overrides: list[str], folder: Path) -> dict:
    from finetune.training.run import train

    recipe = load_recipe(name, [*overrides, f"output.dir={folder}"])
    started = time.time()
    results = train(recipe).results
    final = results["final_metrics"]
    return {
        "f1": final.get("f1"),
        "accuracy": final.get("accuracy"),
        "epochs": results.get("epochs"),
        "steps": results.get("steps"),
        "seconds": round(time.time() - started, 1),
        "stop_reason": results.get("stop_reason"),
        "swa": results.get("swa"),
    }


def summarize(runs: list[dict]) -> dict:
    def stats(key: str) -> tuple[float, float]:
        values = [r[key] for r in runs if r[key] is not None]
        if not values:
            return float("nan"), float("nan")
        return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    f1, f1_sd = stats("f1")
    acc, acc_sd = stats("accuracy")
    return {
        "f1_mean": f1,
        "f1_std": f1_sd,
        "accuracy_mean": acc,
        "accuracy_std": acc_sd,
        "epochs_mean": statistics.mean(r["epochs"] for r in runs),
        "seconds_mean": statistics.mean(r["seconds"] for r in runs),
        "seeds": len(runs),
    }


def describe_recipe(name: str) -> str:
    """The keys this recipe sets differently from base (schedule, optimizer, regularization, budget)."""
    base, this = load_recipe("base").to_yaml_dict(), load_recipe(name).to_yaml_dict()
    sections = ("schedule", "optimizer", "regularization", "training", "early_stopping")
    changes = []
    for section in sections:
        for key, value in this[section].items():
            if value != base[section][key]:
                label = section if key == "name" else key
                changes.append(f"{label} {value:g}" if isinstance(value, float) else f"{label} {value}")
    return ", ".join(changes) or "the reference"


def table(title: str, summaries: dict[str, dict], baseline: str = "base") -> list[str]:
    base = summaries.get(baseline, {}).get("f1_mean")
    lines = [
        f"### {title}",
        "",
        "| recipe | what it changes vs base | F1 (mean ± sd) | vs base | accuracy (mean ± sd) | epochs | s/run |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, s in summaries.items():
        delta = "" if name == baseline or base is None else f"{100 * (s['f1_mean'] - base):+.2f}"
        lines.append(
            f"| `{name}` | {describe_recipe(name)} | {100 * s['f1_mean']:.2f} ± {100 * s['f1_std']:.2f} | "
            f"{delta} | {100 * s['accuracy_mean']:.2f} ± {100 * s['accuracy_std']:.2f} | "
            f"{s['epochs_mean']:.1f} | {s['seconds_mean']:.0f} |"
        )
    return lines


def plot_lr_curves(names: list[str], overrides: list[str], path: Path) -> Path:
    """Each recipe's LR per optimizer step over its MRPC run, as the benchmark ran it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    curves: dict[tuple, list[str]] = {}  # recipes with the same LR curve share one line
    for name in names:
        recipe = load_recipe(name, overrides(name))
        curve = next(iter(schedule_curves(recipe, run_length(recipe)).values()))
        curves.setdefault((recipe.schedule.name, tuple(curve)), []).append(name)
    for (schedule, curve), sharing in curves.items():
        ax.plot(range(len(curve)), curve, label=f"{', '.join(sharing)} ({schedule})", linewidth=1.4)
    ax.set(
        xlabel="optimizer step",
        ylabel="learning rate",
        title="LR schedules of the benchmarked recipes (MRPC)",
    )
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 64 training rows, 2 epochs")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per recipe (default 3; quick 1)")
    parser.add_argument("--recipes", nargs="+", default=RECIPES, help="recipes to compare (base first)")
    parser.add_argument("--epochs", type=float, default=3, help="epochs for every recipe but small-data")
    parser.add_argument(
        "--train-rows", type=int, default=None, help="cap MRPC's training rows (default: all)"
    )
    parser.add_argument("--data", type=Path, default=GLUE, help="GLUE folder (with MRPC/)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default benchmarks/)")
    parser.add_argument("--no-small-data-table", action="store_true", help="skip the 500-row comparison")
    args = parser.parse_args()
    if not (args.data / "MRPC" / "train.tsv").is_file():
        print(f"MRPC not found under {args.data}; pass --data", file=sys.stderr)
        return 1
    seeds = list(range(args.seeds or (1 if args.quick else 3)))
    epochs = 2 if args.quick else args.epochs
    rows = (64, 32) if args.quick else (args.train_rows, None)
    out = args.out or (
        Path(tempfile.mkdtemp(prefix="bench-regularization-")) if args.quick else REPO / "benchmarks"
    )
    out.mkdir(parents=True, exist_ok=True)

    regimes = {f"MRPC, {rows[0] or 'all 3,667'} training rows": (args.recipes, rows[0])}
    if not args.no_small_data_table:
        small = [r for r in SMALL_DATA_RECIPES if r in args.recipes]
        small_rows = 32 if args.quick else 500
        regimes[f"MRPC, {small_rows} training rows"] = (small, small_rows)
    report: dict = {"seeds": seeds, "epochs": epochs, "quick": args.quick, "regimes": {}}
    with tempfile.TemporaryDirectory(prefix="bench-runs-") as scratch:
        for regime, (names, train_rows) in regimes.items():
            summaries, raw = {}, {}
            for name in names:
                runs = []
                for seed in seeds:
                    print(f"\n=== {regime}: {name}, seed {seed} ===", flush=True)
                    folder = Path(scratch) / f"{name}-{train_rows}-{seed}"
                    overrides = mrpc_overrides(args.data, seed, epochs, train_rows, rows[1])
                    runs.append(run_one(name, [*overrides, *budget(name, epochs, args.quick)], folder))
                raw[name], summaries[name] = runs, summarize(runs)
            report["regimes"][regime] = {"summary": summaries, "runs": raw}

    def lr_overrides(name: str) -> list[str]:
        return [*mrpc_overrides(args.data, 0, epochs, rows[0], rows[1]), *budget(name, epochs, args.quick)]

    figure = plot_lr_curves(args.recipes, lr_overrides, out / "regularization_lr.png")
    majority_f1, majority_accuracy = majority_scores(args.data / "MRPC" / "dev.tsv")
    lines = [
        "# Schedules and regularizers on MiniLM-L6 + MRPC",
        "",
        f"`{shlex.join(['python', 'scripts/bench_regularization.py', *sys.argv[1:]])}`: validation F1 and accuracy "
        f"(in %) of the weights each run ends with, over seeds {seeds}; every recipe trains {epochs:g} epochs at "
        "batch 16 with early stopping on F1"
        + ("" if args.quick else ", except `small-data` (its own 10 epochs, patience 4)")
        + ". Seconds are wall time per run (loading, evaluations and training). "
        "The same dev set picks the best epoch and reports it, as in GLUE dev-set practice. "
        f"For scale: predicting every pair a paraphrase scores F1 {100 * majority_f1:.2f} and accuracy "
        f"{100 * majority_accuracy:.2f} on MRPC's dev set.",
        "",
    ]
    for regime, result in report["regimes"].items():
        lines += [*table(regime, result["summary"]), ""]
    lines += [f"![LR curves]({figure.name})", ""]
    (out / "regularization.md").write_text("\n".join(lines), encoding="utf-8")
    (out / "regularization.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    print("\n".join(lines))
    print(f"\nwrote {out / 'regularization.md'}, regularization.json and {figure.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
