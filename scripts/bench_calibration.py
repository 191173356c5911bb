"""Benchmark: does temperature scaling calibrate MiniLM-L6 on GLUE data it was not fitted on?

    python scripts/bench_calibration.py            # 3 seeds, SST-2 and MRPC subsets (~25 min on 1 core)
    python scripts/bench_calibration.py --quick    # smoke test: 1 seed, 200 rows, 1 epoch

Each run trains `base` (MiniLM-L6) on N rows of a GLUE training file with no validation file, so
the run holds out its default 10% of the file as the validation split (capped at 400 rows here): early stopping watches it and
temperature scaling is fitted on it (`calibration.temperature: true`), as a user's run does. The
real GLUE dev file is never seen by the run: the saved model (T folded into its head) predicts it,
and the uncalibrated logits are those times T. Reported on the dev file, mean ± sd over seeds:
ECE (15 equal-width bins), NLL and accuracy before and after, and T. Writes
`benchmarks/calibration.md` and `.json` (`--quick` writes to a temporary folder unless `--out`).
"""

from __future__ import annotations

import argparse
import json
import os
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

import numpy as np  # noqa: E402

from finetune.calibration.temperature import (  # noqa: E402
    expected_calibration_error,
    negative_log_likelihood,
    softmax,
)
from finetune.recipe import load_recipe  # noqa: E402

# beside the checkout (as the other benchmarks expect), else the shared machine's copy
GLUE = next(
    (p for p in (REPO.parent / "shared" / "data" / "glue", Path("/work/shared/data/glue")) if p.is_dir()),
    REPO.parent / "shared" / "data" / "glue",
)
# task -> (folder, text column, pair column, label column, max_length)
TASKS = {
    "sst2": ("SST-2", "sentence", None, "label", 64),
    "mrpc": ("MRPC", "#1 String", "#2 String", "Quality", 128),
}
BINS = 15
VALIDATION_ROWS = 400


def overrides(task: str, glue: Path, seed: int, rows: int, epochs: float) -> list[str]:
    folder, text, pair, label, max_length = TASKS[task]
    given = [
        f"data.dir={glue}",
        f"data.train={folder}/train.tsv",
        f"data.text='{text}'",
        f"data.label={label}",
        f"data.max_length={max_length}",
        f"data.max_train_samples={rows}",
        f"data.max_eval_samples={VALIDATION_ROWS}",  # of the held-out 10% of the file: evaluations stay cheap
        f"training.epochs={epochs}",
        f"training.seed={seed}",
        "calibration.temperature=true",
        "output.plots=false",
        "checkpoints.every_epoch=false",
    ]
    return given + ([f"data.text_pair='{pair}'"] if pair else [])


def dev_scores(run_dir: Path, dev: Path, temperature: float) -> dict:
    """ECE, NLL and accuracy on the dev file, of the saved (calibrated) model and of its logits x T."""
    from finetune.inference.predict import load_predictor, predict_dataset, read_inputs

    predictor = load_predictor(run_dir)
    data = read_inputs(predictor, dev, labelled=True)
    names = [str(n) for n in predictor.label_names]
    labels = np.array([names.index(str(v)) for v in data["labels"]])
    _, logits, _ = predict_dataset(predictor, data, progress=False)
    calibrated = np.stack(logits).astype(np.float64)
    scores = {"dev_examples": len(labels)}
    for when, values in (("before", calibrated * temperature), ("after", calibrated)):
        scores[f"ece_{when}"] = expected_calibration_error(softmax(values), labels, BINS)
        scores[f"nll_{when}"] = negative_log_likelihood(values, labels)
        scores[f"accuracy_{when}"] = float((values.argmax(-1) == labels).mean())
    return scores


def run_one(task: str, glue: Path, seed: int, rows: int, epochs: float, folder: Path) -> dict:
    from finetune.training.run import train

    recipe = load_recipe("base", [*overrides(task, glue, seed, rows, epochs), f"output.dir={folder}"])
    started = time.time()
    result = train(recipe)
    seconds = time.time() - started
    calibration = result.results["calibration"]
    record = {
        "task": task,
        "seed": seed,
        "train": result.results["data"]["train"],
        "validation": result.results["data"]["validation"],
        "temperature": calibration["temperature"],
        "validation_ece_before": calibration["ece_before"],
        "validation_ece_after": calibration["ece_after"],
        "fit_seconds": calibration.get("fit_seconds"),
        "run_seconds": round(seconds, 1),
    }
    record.update(dev_scores(folder, glue / TASKS[task][0] / "dev.tsv", calibration["temperature"]))
    print(json.dumps(record), flush=True)
    return record


def mean_sd(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {spread:.4f}"


def table(records: list[dict]) -> list[str]:
    """One row per task: mean ± sd over seeds of the dev-file figures, and how many seeds improved."""
    lines = [
        "| task | train / validation rows | T | dev ECE before | dev ECE after | dev NLL before | "
        "dev NLL after | dev accuracy (before = after) | seeds with lower ECE / NLL | fit s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for task in dict.fromkeys(r["task"] for r in records):
        rs = [r for r in records if r["task"] == task]
        col = lambda key, rs=rs: [r[key] for r in rs]  # noqa: E731
        better_ece = sum(r["ece_after"] < r["ece_before"] for r in rs)
        better_nll = sum(r["nll_after"] < r["nll_before"] for r in rs)
        same = all(r["accuracy_before"] == r["accuracy_after"] for r in rs)
        lines.append(
            f"| {task} | {rs[0]['train']} / {rs[0]['validation']} | {mean_sd(col('temperature'))} | "
            f"{mean_sd(col('ece_before'))} | {mean_sd(col('ece_after'))} | {mean_sd(col('nll_before'))} | "
            f"{mean_sd(col('nll_after'))} | {mean_sd(col('accuracy_after'))}{'' if same else ' (CHANGED)'} | "
            f"{better_ece}/{len(rs)} / {better_nll}/{len(rs)} | {max(col('fit_seconds')):.3f} |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--glue", type=Path, default=GLUE)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", type=int, default=1500, help="training rows per run")
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--quick", action="store_true", help="1 seed, 200 rows, 1 epoch")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.rows, args.epochs = args.seeds[:1], 200, 1
    out = args.out or (Path(tempfile.mkdtemp()) if args.quick else REPO / "benchmarks")
    records = []
    with tempfile.TemporaryDirectory() as scratch:
        for task in args.tasks:
            for seed in args.seeds:
                folder = Path(scratch) / f"{task}-{seed}"
                records.append(run_one(task, args.glue, seed, args.rows, args.epochs, folder))
    command = "python scripts/bench_calibration.py" + (" --quick" if args.quick else "")
    lines = [
        "# Temperature scaling on MiniLM-L6 (GLUE dev files, never seen by the runs)",
        "",
        f"`{command}`: `base` on the first {args.rows} rows of each training file, {args.epochs:g} "
        f"epochs, seeds {args.seeds}; each run holds out 10% of the file as its validation split "
        f"(the first {VALIDATION_ROWS} of those rows kept), where early stopping watches and T is fitted. Figures are on the GLUE dev file, mean ± sd "
        f"over seeds; ECE over {BINS} equal-width confidence bins. `fit s`: the slowest fit of T.",
        "",
        *table(records),
        "",
    ]
    out.mkdir(parents=True, exist_ok=True)
    (out / "calibration.md").write_text("\n".join(lines), encoding="utf-8")
    (out / "calibration.json").write_text(json.dumps({"runs": records}, indent=2), encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
