"""Benchmark: knowledge distillation on SST-2, a MiniLM-L6 teacher and a 3-layer student.

    python scripts/bench_distill.py            # teacher + 3 seeds x 4 arms, 2,000 rows (~8 min, 1 thread)
    python scripts/bench_distill.py --quick    # smoke test: 1 seed, 200 rows, 1 epoch (a minute or two)

The training file is one fixed draw of SST-2's train.tsv (seed 0); every run holds out `base`'s
default 10% of it (stratified, by the run's seed) for validation and early stopping, and the model
each run ends with (best epoch restored) is scored on SST-2's dev file (872 sentences). The teacher
is MiniLM-L6 (`extends: base`, its `auto` LR), trained once (seed 0). The student is MiniLM-L6 cut
to its bottom 3 layers (embeddings and layers 0-2 keep MiniLM's weights; `from_pretrained` with
`num_hidden_layers: 3`), trained with `base` (its `auto` LR for the same width), without (`plain`)
and with `distill: {teacher: <the teacher run>}` at alpha 0.5, T 2 (`distill`, the shipped recipe's
values), alpha 0.9, T 4 (`distill-soft`: mostly the teacher, softer) and alpha 1, T 2
(`teacher-only`: no labels at all), 3 seeds each; seeds change the head's initialisation, the validation split, dropout and the batches.
Reported: dev accuracy, mean ± sample sd over seeds. Writes `benchmarks/distill.md` and `.json`
(`--quick`: a temporary folder unless `--out`).
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
DATA_SEED = 0
ARMS = {  # name -> (alpha, temperature); `plain` trains without a teacher
    "plain": None,
    "distill": (0.5, 2.0),
    "distill-soft": (0.9, 4.0),
    "teacher-only": (1.0, 2.0),
}


def read_sst2(path: Path) -> list[tuple[str, int]]:
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    return [
        (text.strip(), int(label)) for text, label in (line.rsplit("\t", 1) for line in lines if line.strip())
    ]


def write_tsv(rows: list[tuple[str, int]], path: Path) -> Path:
    path.write_text(
        "sentence\tlabel\n" + "".join(f"{text}\t{label}\n" for text, label in rows), encoding="utf-8"
    )
    return path


def make_student(folder: Path, layers: int) -> Path:
    """MiniLM-L6's embeddings and bottom `layers` layers (their pretrained weights), saved as a model folder."""
    from transformers import AutoModel, AutoTokenizer

    from finetune.model.loading import resolve_model_path

    source = resolve_model_path("minilm-l6")
    AutoModel.from_pretrained(source, num_hidden_layers=layers).save_pretrained(folder)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    return folder


def dev_accuracy(trainer, dev: list[tuple[str, int]], max_length: int) -> float:
    import numpy as np
    from datasets import Dataset

    from finetune.data.task_data import tokenize

    data = Dataset.from_dict({"text": [t for t, _ in dev], "labels": [y for _, y in dev]})
    logits = trainer.predict(tokenize(data, trainer.processing_class, max_length)).predictions
    return float(np.mean(np.asarray(logits).argmax(-1) == np.asarray([y for _, y in dev])))


def run_one(name: str, model: str, seed: int, args, train_file: Path, dev, folder: Path, extra=()) -> dict:
    from finetune.recipe import load_recipe
    from finetune.training.run import train

    overrides = [
        f"model.name={model}",
        f"data.train={train_file}",
        "data.text=sentence",
        "data.label=label",
        f"data.max_length={args.max_length}",
        "early_stopping.metric=accuracy",
        f"training.seed={seed}",
        f"training.epochs={args.epochs}",
        "output.plots=false",
        "calibration.temperature=false",
        "checkpoints.every_epoch=false",
        f"output.dir={folder}",
        *extra,
    ]
    started = time.time()
    result = train(load_recipe("base", overrides))
    record = {
        "arm": name,
        "seed": seed,
        "seconds": round(time.time() - started, 1),
        "best_epoch": result.results["best"]["epoch"],
        "validation_accuracy": result.results["final_metrics"].get("accuracy"),
        "dev_accuracy": dev_accuracy(result.trainer, dev, args.max_length),
        "distill": result.results.get("distill"),
    }
    print(json.dumps(record), flush=True)
    return record


def cell(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * sd:.1f}"


def report(teacher: dict, runs: list[dict], args, wall: float, rows: int) -> str:
    lines = [
        "## Distillation: SST-2, MiniLM-L6 teacher, 3-layer student",
        "",
        f"{rows:,} SST-2 training rows (10% held out for validation and early stopping), max_length "
        f"{args.max_length}, {args.epochs:g} epochs, `base` recipe (auto LR), accuracy on SST-2 dev (872 "
        f"sentences), mean ± sd over {len({r['seed'] for r in runs})} seed(s), in points. Student: "
        f"MiniLM-L6's embeddings and bottom {args.student_layers} layers. {wall / 60:.1f} min wall in all "
        f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}).",
        "",
        "| model | dev accuracy | vs plain student | s/run |",
        "| --- | --- | --- | --- |",
        f"| teacher: MiniLM-L6, 6 layers (seed 0) | {100 * teacher['dev_accuracy']:.1f} | | {teacher['seconds']:.0f} |",
    ]
    plain = [r["dev_accuracy"] for r in runs if r["arm"] == "plain"]
    for arm in dict.fromkeys(r["arm"] for r in runs):
        mine = [r for r in runs if r["arm"] == arm]
        accuracy = [r["dev_accuracy"] for r in mine]
        delta = (
            ""
            if arm == "plain" or not plain
            else f"{100 * (statistics.mean(accuracy) - statistics.mean(plain)):+.1f}"
        )
        label = "no teacher" if ARMS[arm] is None else "alpha {:g}, T {:g}".format(*ARMS[arm])
        seconds = statistics.mean(r["seconds"] for r in mine)
        lines.append(f"| student, `{arm}` ({label}) | {cell(accuracy)} | {delta} | {seconds:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 200 rows, 1 epoch")
    parser.add_argument("--seeds", type=int, default=None, help="student seeds per arm (default 3; quick 1)")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--student-layers", type=int, default=3)
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--data", type=Path, default=GLUE, help="GLUE folder (with SST-2/)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default benchmarks/)")
    args = parser.parse_args()
    if not (args.data / "SST-2" / "train.tsv").is_file():
        print(f"SST-2 not found under {args.data}; pass --data", file=sys.stderr)
        return 1
    if args.quick:
        args.rows, args.epochs = 200, 1
    seeds = list(range(args.seeds or (1 if args.quick else 3)))
    out = args.out or (Path(tempfile.mkdtemp(prefix="bench-distill-")) if args.quick else REPO / "benchmarks")
    work = Path(tempfile.mkdtemp(prefix="distill-runs-"))
    train_rows = random.Random(DATA_SEED).sample(read_sst2(args.data / "SST-2" / "train.tsv"), args.rows)
    train_file = write_tsv(train_rows, work / "train.tsv")
    dev = read_sst2(args.data / "SST-2" / "dev.tsv")
    student = make_student(work / "student-init", args.student_layers)

    started = time.time()
    teacher = run_one("teacher", "minilm-l6", 0, args, train_file, dev, work / "teacher")
    runs = []
    for seed in seeds:
        for arm in args.arms:
            extra = ["output.save_model=false"]
            if ARMS[arm] is not None:
                alpha, temperature = ARMS[arm]
                extra += [
                    f"distill.teacher={work / 'teacher'}",
                    f"distill.alpha={alpha}",
                    f"distill.temperature={temperature}",
                ]
            runs.append(
                run_one(arm, str(student), seed, args, train_file, dev, work / f"{arm}-{seed}", extra)
            )
    wall = time.time() - started
    text = report(teacher, runs, args, wall, len(train_rows))
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "distill.md").write_text(text, encoding="utf-8")
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    payload = {"settings": settings, "wall_seconds": round(wall, 1), "teacher": teacher, "runs": runs}
    (out / "distill.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
    print(f"wrote {out / 'distill.md'} and .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
