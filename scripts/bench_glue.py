"""The shipped GLUE recipes end to end, exactly as a user runs them: `finetune train recipes/glue-<task>.yaml`.

    python scripts/bench_glue.py                    # MRPC (about 13 min on 2 quiet cores)
    python scripts/bench_glue.py --tasks mrpc stsb  # several recipes, one after another
    python scripts/bench_glue.py --tasks sst2 --set training.epochs=1   # recipe keys changed (in the table)

Each recipe runs as its own `finetune train` process on the full GLUE TSV files of `--data`, into a
temporary folder; the table takes the validation metrics before and after training, the time and
the peak memory from each run's `results.json`. Writes benchmarks/glue.md and benchmarks/glue.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GLUE = REPO.parent / "shared" / "data" / "glue"
FOLDERS = {"sst2": "SST-2", "mrpc": "MRPC", "stsb": "STS-B"}


def run_recipe(task: str, data: Path, run_dir: Path, overrides: list[str] | None = None) -> dict:
    command = [
        sys.executable,
        "-m",
        "finetune.cli",
        "train",
        str(REPO / "recipes" / f"glue-{task}.yaml"),
        f"data.dir={data}",
        f"output.dir={run_dir}",
        *(overrides or []),
    ]
    print("$", shlex.join(command), flush=True)
    subprocess.run(command, check=True, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return json.loads((run_dir / "results.json").read_text(encoding="utf-8"))


def row(task: str, results: dict) -> str:
    metric = results["metric"]
    before, after = results["initial_metrics"], results["final_metrics"]
    others = [k for k in after if k not in (metric, "loss")]
    extra = ", ".join(f"{k} {before[k]:.3f} -> {after[k]:.3f}" for k in others)
    changed = f" ({', '.join(results['overrides'])})" if results.get("overrides") else ""
    return (
        f"| {task}{changed} | {results['data']['train']:,} / {results['data']['validation']:,} | {results['steps']:,} "
        f"| {results['train_seconds'] / 60:.1f} | {results['train_samples_per_second']:.1f} "
        f"| {results['peak_rss_mb']:,.0f} | {metric} {before[metric]:.3f} -> **{after[metric]:.3f}** "
        f"(best step {results['best']['step']}) | {extra} "
        f"| {results.get('machine', 'x86_64, 2 cores')}, {results['environment']['device']}, "
        f"torch {results['environment']['torch']} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", choices=sorted(FOLDERS), default=["mrpc"])
    parser.add_argument("--data", type=Path, default=GLUE, help="GLUE folder (GLUE's own layout)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="recipe overrides")
    args = parser.parse_args()
    for task in args.tasks:
        if not (args.data / FOLDERS[task] / "train.tsv").is_file():
            print(f"{FOLDERS[task]}/train.tsv not found under {args.data}; pass --data", file=sys.stderr)
            return 1
    saved = args.out / "glue.json"  # rows of tasks not run now are kept
    results = json.loads(saved.read_text(encoding="utf-8")) if saved.is_file() else {}
    command = shlex.join(["python", "scripts/bench_glue.py", *sys.argv[1:]])
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    with tempfile.TemporaryDirectory(prefix="bench-glue-") as scratch:
        for task in args.tasks:
            results[task] = run_recipe(task, args.data.resolve(), Path(scratch) / task, args.set)
            results[task].update(command=command, machine=machine, overrides=args.set)
    lines = [
        "# The shipped GLUE recipes, end to end",
        "",
        "`python scripts/bench_glue.py --tasks TASK`: `finetune train recipes/glue-<task>.yaml data.dir=...` "
        "on the full training and dev files, the recipe's own settings (MiniLM-L6). Metrics are on the dev "
        "set before training and with the restored best weights; minutes and samples/s count training only. "
        "Each row keeps the machine and torch it ran on (a run of some tasks replaces only their rows).",
        "",
        "| task | train / dev rows | steps | train min | samples/s | peak RSS MB | watched metric | others | machine |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *(row(task, result) for task, result in sorted(results.items())),
        "",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "glue.md").write_text("\n".join(lines), encoding="utf-8")
    (args.out / "glue.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print("\n".join(lines))
    print(f"wrote {args.out / 'glue.md'} and glue.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
