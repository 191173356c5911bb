"""Data preparation before the first step: reading, checking and label-encoding a training file, then
tokenizing it with the truncation report, on GLUE's full SST-2 files and the embedded MiniLM tokenizer.

    python scripts/bench_data_loading.py               # median of 3 repeats in one process
    python scripts/bench_data_loading.py --repeats 1

`load` is `finetune.data.task_data.load_task_data` (reading through datasets' cache, column checks,
label vocabulary and encoding); `tokenize` is `finetune.data.windows.encode_splits` (tokenization,
read from datasets' cache after the first repeat, and the truncation report). Writes
benchmarks/data-loading.md and .json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GLUE = REPO.parent / "shared" / "data" / "glue"


def timed(repeats: int, data_dir: Path) -> dict[str, list[float]]:
    from finetune.data.task_data import load_task_data
    from finetune.data.windows import encode_splits
    from finetune.model.loading import load_tokenizer
    from finetune.recipe import load_recipe

    recipe = load_recipe("glue-sst2", [f"data.dir={data_dir}"])
    tokenizer = load_tokenizer(recipe.model)
    seconds: dict[str, list[float]] = {"load": [], "tokenize": []}
    for _ in range(repeats):
        started = time.perf_counter()
        data = load_task_data(recipe.data, recipe.model.task, recipe.training.seed)
        loaded = time.perf_counter()
        encode_splits(data, tokenizer, recipe.data)
        seconds["load"].append(loaded - started)
        seconds["tokenize"].append(time.perf_counter() - loaded)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", type=Path, default=GLUE)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks")
    parser.add_argument("--label", default="this checkout", help="the code version, for the table")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    seconds = timed(args.repeats, args.data)
    row = {k: round(statistics.median(v), 2) for k, v in seconds.items()}
    line = f"| {args.label} | {row['load']:.2f} | {row['tokenize']:.2f} |"
    print(line)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "data-loading.json").write_text(
        json.dumps({"label": args.label, "seconds": seconds}, indent=1)
    )
    table = [
        "# Data preparation before the first step: GLUE SST-2, full files (67,349 + 872 rows)",
        "",
        f"`python scripts/bench_data_loading.py --repeats {args.repeats}`: median seconds.",
        "",
        "| code | load s | tokenize + truncation report s |",
        "| --- | --- | --- |",
        line,
        "",
    ]
    (args.out / "data-loading.md").write_text("\n".join(table), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
