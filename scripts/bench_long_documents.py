"""Benchmark: long documents truncated vs split into windows, on a synthetic set whose label is
only in the last sentence of each text.

    python scripts/bench_long_documents.py            # 3 seeds x (truncated, windows mean, windows max)
    python scripts/bench_long_documents.py --quick    # 1 seed, fewer rows (a smoke test)

Every document is 8-14 neutral filler sentences followed by a verdict sentence ("All in all, the
verdict is positive." / "... negative."), so the first `max_length` tokens never say the label:
truncation can only guess, while windows see the verdict in each document's last window. MiniLM-L6
(the embedded model), max_length 64, 3 epochs, the same data for every run; reported: validation
accuracy per document (mean and standard deviation over seeds), training windows and wall time.
Writes `benchmarks/long-documents.md` and `.json` (`--quick`: a temporary folder unless `--out`).
"""

from __future__ import annotations

import argparse
import csv
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

FILLER = [
    "The package arrived on a Tuesday morning.",
    "It came in a plain brown box with a paper manual.",
    "I set it up in the kitchen next to the window.",
    "My neighbour asked about it when she visited.",
    "The instructions were printed in four languages.",
    "We used it most evenings during the first month.",
    "The colour is a dark grey that matches the counter.",
    "It weighs about as much as a bag of flour.",
    "There is a small light on the front panel.",
    "The cable is long enough to reach the wall socket.",
    "I read a few other reviews before writing this one.",
    "My brother has an older model from the same company.",
    "The store was busy on the day I picked it up.",
    "It sits on a shelf when it is not in use.",
    "The box also held a short cleaning brush.",
    "We moved house halfway through the year.",
]
VERDICT = {
    "positive": "All in all, the verdict is positive.",
    "negative": "All in all, the verdict is negative.",
}
NOTES = """Truncation keeps the first 64 tokens, none of which say the label: its runs stay at chance (always
answering the majority class scores 0.52 on this validation set), and their best weights were those
before training. Windows put the verdict sentence in each document's last window, and both
aggregations find it in every document: an easy task once the label is seen, so this measures that
windows reach the end of the text, not how much they help on real documents, where the evidence is
spread out. Windows cost time in proportion to the windows (2.7 per document here). Seconds are wall
time on 2 shared CPU cores, 1 thread."""
SETTINGS = {  # name -> data.long_documents
    "truncated": None,
    "windows, mean": {"aggregate": "mean"},
    "windows, max": {"aggregate": "max"},
}


def documents(count: int, seed: int) -> list[dict]:
    """Filler sentences, then the verdict: the label is decidable from the end of the text only."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        label = rng.choice(sorted(VERDICT))
        body = " ".join(rng.choice(FILLER) for _ in range(rng.randint(8, 14)))
        rows.append({"text": f"{body} {VERDICT[label]}", "label": label})
    return rows


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def run_one(folder: Path, name: str, seed: int, epochs: float) -> dict:
    """Train one setting on the shared files; accuracy per document and the windows trained on."""
    from finetune.recipe import validate_recipe
    from finetune.training.run import train

    recipe = {
        "extends": None,
        "model": {"name": "minilm-l6"},
        "data": {
            "train": str(folder / "train.csv"),
            "validation": str(folder / "dev.csv"),
            "max_length": 64,
            "long_documents": SETTINGS[name],
        },
        "optimizer": {"lr": 1e-4},
        "schedule": {"warmup_ratio": 0.1},
        "training": {"epochs": epochs, "batch_size": 16, "seed": seed},
        "early_stopping": {"metric": "accuracy", "patience": 5},
        "output": {
            "dir": str(folder / f"{name.replace(', ', '-')}-{seed}"),
            "save_model": False,
            "plots": False,
        },
    }
    recipe.pop("extends")
    started = time.time()
    result = train(validate_recipe(recipe))
    train_texts = result.results["long_texts"]["train"]
    return {
        "setting": name,
        "seed": seed,
        "accuracy": result.results["final_metrics"]["accuracy"],
        "training_rows": train_texts["windows"] or train_texts["texts"],
        "longer_than_max_length": train_texts["longer_than_max_length"],
        "median_tokens_over": train_texts["median_tokens_over"],
        "seconds": round(time.time() - started, 1),
    }


def table(runs: list[dict], train_rows: int, dev_rows: int) -> str:
    lines = [
        f"Synthetic long documents: {train_rows} training and {dev_rows} validation texts, the label only in "
        "the last sentence; MiniLM-L6, max_length 64, validation accuracy per document.",
        "",
        "| setting | accuracy (mean ± std) | seeds | training rows | seconds per run |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in SETTINGS:
        rows = [r for r in runs if r["setting"] == name]
        scores = [r["accuracy"] for r in rows]
        spread = statistics.stdev(scores) if len(scores) > 1 else 0.0
        lines.append(
            f"| {name} | {statistics.mean(scores):.3f} ± {spread:.3f} | {len(rows)} | "
            f"{rows[0]['training_rows']:,} | {statistics.mean(r['seconds'] for r in rows):.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 seed, 120/40 documents, 1 epoch")
    parser.add_argument("--out", type=Path, help="folder for long-documents.md/.json (default: benchmarks/)")
    args = parser.parse_args()
    seeds, train_rows, dev_rows, epochs = ([0], 120, 40, 1) if args.quick else ([0, 1, 2], 400, 200, 3)
    out = args.out or (Path(tempfile.mkdtemp()) if args.quick else REPO / "benchmarks")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        write_csv(folder / "train.csv", documents(train_rows, 1))
        write_csv(folder / "dev.csv", documents(dev_rows, 2))
        runs = [run_one(folder, name, seed, epochs) for seed in seeds for name in SETTINGS]
    text = table(runs, train_rows, dev_rows)
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "long-documents.md").write_text(
        f"# Long documents: truncation vs windows\n\n{text}\n\n{NOTES}\n", encoding="utf-8"
    )
    summary = {
        "train_rows": train_rows,
        "dev_rows": dev_rows,
        "epochs": epochs,
        "max_length": 64,
        "runs": runs,
    }
    (out / "long-documents.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out / 'long-documents.md'} and .json")


if __name__ == "__main__":
    main()
