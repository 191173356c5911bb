"""ONNX export: latency of PyTorch fp32 against onnxruntime fp32 and int8, and what int8 costs in accuracy.

    OMP_NUM_THREADS=1 python scripts/bench_export.py --glue /work/shared/data/glue
    python scripts/bench_export.py --quick        # 200 training rows, 1 seed: checks the harness

For each seed: `finetune train` fine-tunes MiniLM-L6 (recipes/glue-sst2.yaml) on a seeded subset of
SST-2 train (2 epochs, LR 1e-4); `finetune export --quantize int8` (the library function) exports it and
checks parity on the whole SST-2 dev set; then PyTorch, model.onnx and model.int8.onnx each predict
the dev set and are scored against its gold labels. Latency is measured on the first seed's model
(weights do not change the cost): batch 1 on single dev sentences (no padding), batch 32 on dev in
file order (padded to the longest of each batch, as a server batches requests), one thread
everywhere (torch.set_num_threads(1); onnxruntime intra- and inter-op threads 1), alternating the
three engines for --rounds rounds so that drift in machine load spreads over all of them.
Writes benchmarks/export.md and .json (--quick: export-quick.*).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
GLUE = REPO.parent / "shared" / "data" / "glue"
OUT = REPO / "benchmarks"
ENGINES = ("pytorch-fp32", "onnx-fp32", "onnx-int8")


def write_subset(glue: Path, folder: Path, rows: int, seed: int) -> Path:
    """SST-2/train.tsv (a seeded subset) and SST-2/dev.tsv (whole) under `folder`, for data.dir."""
    source, target = glue / "SST-2", folder / "SST-2"
    target.mkdir(parents=True, exist_ok=True)
    with (source / "train.tsv").open(encoding="utf-8") as handle:
        header, *lines = handle.read().splitlines()
    random.Random(seed).shuffle(lines)
    (target / "train.tsv").write_text("\n".join([header, *lines[:rows]]) + "\n", encoding="utf-8")
    (target / "dev.tsv").write_text((source / "dev.tsv").read_text(encoding="utf-8"), encoding="utf-8")
    return folder


def dev_rows(folder: Path) -> tuple[list[str], list[int]]:
    with (folder / "SST-2" / "dev.tsv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r["sentence"] for r in rows], [int(r["label"]) for r in rows]


def fine_tune(data: Path, out: Path, seed: int, epochs: int, max_length: int) -> Path:
    from finetune.recipe import load_recipe
    from finetune.training.run import train

    overrides = [
        f"data.dir={data}",
        f"data.max_length={max_length}",
        f"training.epochs={epochs}",
        f"training.seed={seed}",
        "optimizer.lr=1e-4",
        f"output.dir={out}",
        "evaluation.every=epoch",
        "output.plots=false",
    ]
    return train(load_recipe(REPO / "recipes" / "glue-sst2.yaml", overrides)).run_dir


class Engines:
    """The three ways to get logits for a batch of texts, each on one thread."""

    def __init__(self, run_dir: Path, export_dir: Path, max_length: int) -> None:
        import onnxruntime
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        torch.set_num_threads(1)
        self.max_length = max_length
        self.tokenizer = AutoTokenizer.from_pretrained(export_dir)
        self.model = AutoModelForSequenceClassification.from_pretrained(run_dir / "model").eval()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
        self.sessions = {
            name: onnxruntime.InferenceSession(
                str(export_dir / file), options, providers=["CPUExecutionProvider"]
            )
            for name, file in (("onnx-fp32", "model.onnx"), ("onnx-int8", "model.int8.onnx"))
        }

    def logits(self, engine: str, texts: list[str]) -> Any:
        import torch

        kind = "pt" if engine == "pytorch-fp32" else "np"
        encoded = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors=kind
        )
        if engine == "pytorch-fp32":
            with torch.inference_mode():
                return self.model(**encoded).logits.numpy()
        session = self.sessions[engine]
        return session.run(["logits"], {i.name: encoded[i.name] for i in session.get_inputs()})[0]


def batches(texts: list[str], size: int) -> list[list[str]]:
    return [texts[i : i + size] for i in range(0, len(texts), size)]


def dev_accuracy(engines: Engines, texts: list[str], labels: list[int]) -> dict[str, float]:
    import numpy as np

    scores = {}
    for engine in ENGINES:
        logits = np.concatenate([engines.logits(engine, b) for b in batches(texts, 32)])
        scores[engine] = float((logits.argmax(-1) == np.asarray(labels)).mean())
    return scores


def time_calls(engines: Engines, engine: str, calls: list[list[str]]) -> list[float]:
    """Milliseconds per call, tokenization included (a deployed model tokenizes too)."""
    times = []
    for texts in calls:
        started = time.perf_counter()
        engines.logits(engine, texts)
        times.append((time.perf_counter() - started) * 1000)
    return times


def latency(engines: Engines, texts: list[str], singles: int, rounds: int) -> dict[str, dict[str, Any]]:
    plans = {1: [[t] for t in texts[:singles]], 32: batches(texts, 32)}
    results: dict[str, dict[str, Any]] = {}
    for batch, calls in plans.items():
        for engine in ENGINES:
            time_calls(engines, engine, calls[:5])  # warm up: first-call allocations and caches
        samples: dict[str, list[float]] = {engine: [] for engine in ENGINES}
        for round_ in range(rounds):
            order = ENGINES[round_ % 3 :] + ENGINES[: round_ % 3]
            for engine in order:
                samples[engine] += time_calls(engines, engine, calls)
        for engine, times in samples.items():
            texts_per_call = len(texts) / len(calls) if batch == 32 else 1
            median = statistics.median(times)
            results[f"{engine}@{batch}"] = {
                "engine": engine,
                "batch": batch,
                "calls": len(times),
                "median_ms": median,
                "p90_ms": statistics.quantiles(times, n=10)[-1],
                "texts_per_second": texts_per_call * 1000 / median,
            }
    return results


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def markdown(result: dict[str, Any]) -> str:
    lat, seeds = result["latency"], result["seeds"]
    torch_row = {b: lat[f"pytorch-fp32@{b}"]["median_ms"] for b in (1, 32)}
    lines = [
        "# ONNX export: latency and int8 accuracy (MiniLM-L6, SST-2)",
        "",
        f"CPU: {result['machine']['cpu']}, **1 thread** (torch.set_num_threads(1), onnxruntime intra/inter-op "
        f"threads 1, OMP_NUM_THREADS=1); torch {result['machine']['torch']}, onnxruntime "
        f"{result['machine']['onnxruntime']}. Model: all-MiniLM-L6-v2 fine-tuned by `finetune train` "
        f"(recipes/glue-sst2.yaml, lr 1e-4, {result['train_rows']:,} SST-2 train rows, {result['epochs']} epochs, "
        f"max_length {result['max_length']}), exported by `finetune export --quantize int8`. Texts: SST-2 dev "
        f"({result['dev_texts']} sentences); batch 1 = the first {result['singles']} sentences one at a time, "
        f"batch 32 = dev in file order, padded to each batch's longest. Times include tokenization; "
        f"{result['rounds']} rounds alternating the engines. The machine was shared (2 cores, other jobs "
        "running): medians, with p90 for the spread.",
        "",
        "## Latency",
        "",
        "| engine | batch | median ms / call | p90 ms | texts / s | speed-up vs PyTorch |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in lat.values():
        speedup = torch_row[row["batch"]] / row["median_ms"]
        lines.append(
            f"| {row['engine']} | {row['batch']} | {row['median_ms']:.2f} | {row['p90_ms']:.2f} | "
            f"{row['texts_per_second']:.0f} | {speedup:.2f}x |"
        )
    sizes = result["file_mb"]
    lines += [
        "",
        f"Files: model.onnx {sizes['model.onnx']:.1f} MB, model.int8.onnx {sizes['model.int8.onnx']:.1f} MB.",
        "",
        f"## Accuracy on SST-2 dev ({len(seeds)} seed{'s' if len(seeds) > 1 else ''}: mean ± std)",
        "",
        "| engine | dev accuracy | agreement with PyTorch | max abs logit difference |",
        "| --- | ---: | ---: | ---: |",
    ]
    for engine, check in (("pytorch-fp32", None), ("onnx-fp32", 0), ("onnx-int8", 1)):
        accuracy = mean_std([s["accuracy"][engine] for s in seeds])
        if check is None:
            lines.append(f"| {engine} | {accuracy} | (reference) | (reference) |")
            continue
        agreement = mean_std([s["parity"][check]["agreement"] for s in seeds])
        worst = max(s["parity"][check]["max_abs_diff"] for s in seeds)
        lines.append(f"| {engine} | {accuracy} | {agreement} | {worst:.2e} (worst seed) |")
    lines += ["", result["verdict"], ""]
    return "\n".join(lines)


def verdict(result: dict[str, Any]) -> str:
    """The figures in words, whichever way they came out."""
    lat, seeds = result["latency"], result["seeds"]
    drops = [s["accuracy"]["pytorch-fp32"] - s["accuracy"]["onnx-int8"] for s in seeds]
    speed = {b: lat[f"pytorch-fp32@{b}"]["median_ms"] / lat[f"onnx-int8@{b}"]["median_ms"] for b in (1, 32)}
    fp32 = {b: lat[f"pytorch-fp32@{b}"]["median_ms"] / lat[f"onnx-fp32@{b}"]["median_ms"] for b in (1, 32)}
    gate = sum(s["parity"][1]["agreement"] >= 0.99 for s in seeds)
    return (
        f"In words: onnxruntime fp32 is {fp32[1]:.2f}x PyTorch's speed at batch 1 and {fp32[32]:.2f}x at "
        f"batch 32; int8 is {speed[1]:.2f}x and {speed[32]:.2f}x. int8 changes dev accuracy by "
        f"{-statistics.mean(drops) * 100:+.2f} points on average (per seed: "
        f"{', '.join(f'{-d * 100:+.2f}' for d in drops)}); int8 met `finetune export`'s default gate (99% "
        f"agreement with PyTorch) for {gate} of {len(seeds)} seeds."
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    import onnxruntime
    import torch

    from finetune.inference.export import export_run

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    seeds, first = [], None
    for seed in args.seeds:
        data = write_subset(args.glue, work / f"data-{seed}", args.train_rows, seed)
        started = time.perf_counter()
        run_dir = fine_tune(data, work / f"run-{seed}", seed, args.epochs, args.max_length)
        trained = time.perf_counter() - started
        # min_agreement 0: measure whatever int8 does; whether the default 99% gate passed is reported
        summary = export_run(run_dir, quantize="int8", min_agreement=0.0, max_texts=0, batch_size=32)
        texts, labels = dev_rows(data)
        engines = Engines(run_dir, Path(summary["output_dir"]), args.max_length)
        seeds.append(
            {
                "seed": seed,
                "train_seconds": trained,
                "export_seconds": summary["export_seconds"],
                "accuracy": dev_accuracy(engines, texts, labels),
                "parity": [p.to_dict() for p in summary["parity"]],
            }
        )
        print(json.dumps(seeds[-1]["accuracy"]), flush=True)
        first = first or (engines, texts, Path(summary["output_dir"]))
    engines, texts, export_dir = first
    result = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "threads": 1,
        },
        "train_rows": args.train_rows,
        "epochs": args.epochs,
        "max_length": args.max_length,
        "dev_texts": len(texts),
        "singles": args.singles,
        "rounds": args.rounds,
        "file_mb": {f: (export_dir / f).stat().st_size / 1e6 for f in ("model.onnx", "model.int8.onnx")},
        "latency": latency(engines, texts, args.singles, args.rounds),
        "seeds": seeds,
    }
    result["verdict"] = verdict(result)
    return result


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--glue", type=Path, default=GLUE, help="folder holding SST-2/ (GLUE TSVs)")
    parser.add_argument("--train-rows", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--singles", type=int, default=200, help="sentences timed one at a time")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="200 rows, 1 seed, 1 round: checks the harness")
    args = parser.parse_args()
    if args.quick:
        args.train_rows, args.seeds, args.rounds, args.singles = 200, [0], 1, 20
    if not (args.glue / "SST-2" / "dev.tsv").is_file():
        sys.exit(f"SST-2 not found under {args.glue}; pass --glue FOLDER (the folder that holds SST-2/)")
    result = run(args)
    result["machine"]["cpu"] = cpu_name()
    text = markdown(result)
    print(text)
    name = "export-quick" if args.quick else "export"
    OUT.mkdir(exist_ok=True)
    (OUT / f"{name}.md").write_text(text, encoding="utf-8")
    (OUT / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
