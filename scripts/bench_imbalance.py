"""Benchmark: imbalanced classes on SST-2 subsampled to 1:9, none vs class weights vs focal vs sampler.

    python scripts/bench_imbalance.py            # 3 seeds x 6 arms, 1,500 rows (~18 min, 1 thread)
    python scripts/bench_imbalance.py --quick    # smoke test: 1 seed, 200 rows, 1 epoch (a minute)

The training file is one fixed draw from SST-2's train.tsv: 1,350 negative and 150 positive
sentences (1:9, positives the minority). Every arm extends `base` (MiniLM-L6, its `auto` LR and 3
epochs, batch 32) with `data.max_length: 64` and early stopping on macro-F1 (accuracy would pick the
epoch that ignores the minority best); the validation split is `base`'s default, 10% of the
training file held out stratified (135 negatives, 15 positives). The arms: `none` (plain
cross-entropy), `auto` (`loss.class_weights: auto`, inverse frequency), `effective` (auto,
effective number of samples, beta 0.999), `focal` (`loss.focal_gamma: 2`, no weights),
`balanced` (`training.sampler: balanced`) and `auto+focal` (both: the paper's alpha-balanced focal
loss). The model each run ends with (best epoch restored) is scored on SST-2's real dev file (428 negatives, 444 positives: balanced) and on a fixed 1:9 subset
of it (all 428 negatives, 48 positives: the training distribution). Reported: macro-F1, balanced
accuracy, positive-class recall and accuracy, mean ± sample sd over seeds (seeds change the head's
initialisation, the validation split, dropout and the batches; the training file stays the same).
Writes `benchmarks/imbalance.md` and `.json` (`--quick`: a temporary folder unless `--out`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
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

GLUE = Path("/work/shared/data/glue")
ARMS = {
    "none": [],
    "auto": ["loss.class_weights=auto"],
    "effective": ["loss.class_weights=auto", "loss.auto_weights=effective"],
    "focal": ["loss.focal_gamma=2"],
    "balanced": ["training.sampler=balanced"],
    "auto+focal": ["loss.class_weights=auto", "loss.focal_gamma=2"],
}
DATA_SEED = 0  # the one draw of training rows and of the 1:9 dev subset


def read_sst2(path: Path) -> list[tuple[str, int]]:
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    return [
        (text.strip(), int(label)) for text, label in (line.rsplit("\t", 1) for line in lines if line.strip())
    ]


def subsample(rows: list[tuple[str, int]], negatives: int, positives: int) -> list[tuple[str, int]]:
    """`negatives` label-0 and `positives` label-1 rows, drawn with `DATA_SEED`, shuffled."""
    rng = random.Random(DATA_SEED)
    by_label = {label: [row for row in rows if row[1] == label] for label in (0, 1)}
    chosen = rng.sample(by_label[0], negatives) + rng.sample(by_label[1], positives)
    rng.shuffle(chosen)
    return chosen


def write_tsv(rows: list[tuple[str, int]], path: Path) -> Path:
    path.write_text(
        "sentence\tlabel\n" + "".join(f"{text}\t{label}\n" for text, label in rows), encoding="utf-8"
    )
    return path


def dev_scores(trainer, dev: list[tuple[str, int]], max_length: int) -> dict:
    """Metrics of the trained model on the dev rows (label names '0', '1' are ids 0, 1)."""
    import numpy as np
    from datasets import Dataset

    from finetune.data.task_data import tokenize
    from finetune.training.metrics import classification_metrics

    data = Dataset.from_dict({"text": [t for t, _ in dev], "labels": [y for _, y in dev]})
    logits = trainer.predict(tokenize(data, trainer.processing_class, max_length)).predictions
    labels = np.asarray([y for _, y in dev])
    metrics = classification_metrics(np.asarray(logits, dtype=np.float64), labels, 2, ["0", "1"])
    keys = ("f1_macro", "balanced_accuracy", "recall_1", "accuracy")
    return {key: metrics[key] for key in keys}


def run_one(arm: str, train_file: Path, seed: int, args, dev: dict, folder: Path) -> dict:
    from finetune.recipe import load_recipe
    from finetune.training.run import train

    overrides = [
        f"data.train={train_file}",
        "data.text=sentence",
        "data.label=label",
        f"data.max_length={args.max_length}",
        "early_stopping.metric=f1_macro",
        f"training.seed={seed}",
        "output.save_model=false",
        "output.plots=false",
        "checkpoints.every_epoch=false",
        f"output.dir={folder}",
        *([f"training.epochs={args.epochs}"] if args.epochs else []),
        *ARMS[arm],
    ]
    started = time.time()
    result = train(load_recipe("base", overrides))
    record = {
        "arm": arm,
        "seed": seed,
        "seconds": round(time.time() - started, 1),
        "epochs": result.results["epochs"],
        "best_epoch": result.results["best"]["epoch"],
        "class_weights": (result.results.get("loss") or {}).get("class_weights"),
        "validation": {k: result.results["final_metrics"].get(k) for k in ("f1_macro", "balanced_accuracy")},
    }
    for name, rows in dev.items():
        record[name] = dev_scores(result.trainer, rows, args.max_length)
    return record


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def cell(runs: list[dict], split: str, key: str) -> str:
    mean, sd = mean_sd([100 * r[split][key] for r in runs])
    return f"{mean:.1f} ± {sd:.1f}"


def table(runs: list[dict], split: str, title: str) -> list[str]:
    lines = [
        f"### {title}",
        "",
        "| arm | macro-F1 | vs none | balanced accuracy | positive recall | accuracy | s/run |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    base = (
        statistics.mean(r[split]["f1_macro"] for r in runs if r["arm"] == "none")
        if any(r["arm"] == "none" for r in runs)
        else None
    )
    for arm in dict.fromkeys(r["arm"] for r in runs):
        mine = [r for r in runs if r["arm"] == arm]
        f1 = statistics.mean(r[split]["f1_macro"] for r in mine)
        delta = "" if arm == "none" or base is None else f"{100 * (f1 - base):+.1f}"
        lines.append(
            f"| `{arm}` | {cell(mine, split, 'f1_macro')} | {delta} | {cell(mine, split, 'balanced_accuracy')} | "
            f"{cell(mine, split, 'recall_1')} | {cell(mine, split, 'accuracy')} | "
            f"{statistics.mean(r['seconds'] for r in mine):.0f} |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 200 rows, 1 epoch")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per arm (default 3; quick 1)")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--rows", type=int, default=1500, help="training rows, 9 negatives to 1 positive")
    parser.add_argument("--epochs", type=float, default=None, help="default: base's auto (3)")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--data", type=Path, default=GLUE, help="GLUE folder (with SST-2/)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default benchmarks/)")
    args = parser.parse_args()
    if not (args.data / "SST-2" / "train.tsv").is_file():
        print(f"SST-2 not found under {args.data}; pass --data", file=sys.stderr)
        return 1
    if args.quick:
        args.rows, args.epochs = 200, args.epochs or 1
    seeds = list(range(args.seeds or (1 if args.quick else 3)))
    out = args.out or (
        Path(tempfile.mkdtemp(prefix="bench-imbalance-")) if args.quick else REPO / "benchmarks"
    )
    work = Path(tempfile.mkdtemp(prefix="imbalance-runs-"))
    positives = args.rows // 10
    train_rows = subsample(read_sst2(args.data / "SST-2" / "train.tsv"), args.rows - positives, positives)
    train_file = write_tsv(train_rows, work / "train-1to9.tsv")
    full_dev = read_sst2(args.data / "SST-2" / "dev.tsv")
    dev_negatives = sum(1 for _, y in full_dev if y == 0)
    dev = {"dev": full_dev, "dev_1to9": subsample(full_dev, dev_negatives, round(dev_negatives / 9))}

    started, runs = time.time(), []
    for seed in seeds:
        for arm in args.arms:
            runs.append(run_one(arm, train_file, seed, args, dev, work / f"{arm}-{seed}"))
            print(json.dumps(runs[-1]), flush=True)
    wall = time.time() - started
    lines = [
        "## Imbalanced classes: SST-2 at 1:9",
        "",
        f"MiniLM-L6 (`extends: base`), {len(train_rows):,} training rows ({len(train_rows) - positives:,} negative, "
        f"{positives} positive; 10% held out for validation), max_length {args.max_length}, "
        f"{args.epochs or 3:g} epochs, early stopping on validation macro-F1, {len(seeds)} seed(s); "
        f"mean ± sd, in points. {wall / 60:.1f} min wall in all (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}).",
        "",
        *table(runs, "dev", f"SST-2 dev, balanced ({len(full_dev)} sentences)"),
        "",
        *table(runs, "dev_1to9", f"SST-2 dev subsampled to 1:9 ({len(dev['dev_1to9'])} sentences)"),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "imbalance.md").write_text(text, encoding="utf-8")
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    (out / "imbalance.json").write_text(
        json.dumps({"settings": settings, "wall_seconds": round(wall, 1), "runs": runs}, indent=1),
        encoding="utf-8",
    )
    print(f"wrote {out / 'imbalance.md'} and .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
