"""GPU throughput in one command: the plain Trainer, the expert Trainer and `finetune train` side by side.

    bash scripts/bench_gpu.sh                        # on a GPU machine: installs what is missing, runs this
    python scripts/bench_gpu.py                      # the same, packages already installed
    python scripts/bench_gpu.py --tiny --device cpu  # a 2-layer tiny BERT on the CPU: checks the harness
    python scripts/bench_gpu.py --configs finetune+compile+batch-128   # variants combine with '+'

A BERT-base-sized model (random weights from `BertConfig()`: throughput does not depend on the
weights) fine-tunes on synthetic single sentences of realistic length variety (log-normal, median
47% of `max_length`, truncated at `max_length` = 128), so the run needs no data set, no hub and no
tokenizer package: the tokenizer is a WordPiece vocabulary of made-up words, one token each, so a
text of n-2 words is exactly n tokens.

Each configuration runs in its own process (peak memory is its own) for one time-bounded window:
the first `--warmup-steps` optimizer steps are skipped (CUDA start-up, autotuning, torch.compile),
then steps are timed until `--window-seconds` or `--window-steps` pass, and training stops. Every
batch is full (the row count divides every batch size), so samples = steps x batch. Real tokens/s
is samples/s x the data's mean real length; MFU is samples/s x the mean training FLOPs of an example
(6N t + 12 L d t^2 at its real length t, `bench_throughput.training_flops`) over the GPU's dense bf16
peak. The whole run keeps within `--max-seconds`: configurations that no longer fit are listed as
skipped. Writes benchmarks/throughput-gpu.md and .json (`--out`, `--out-dir`).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
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

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "benchmarks"
SEED = 42


def _load_bench_throughput():
    spec = importlib.util.spec_from_file_location("bench_throughput", HERE / "bench_throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bt = _load_bench_throughput()

# What each `finetune+VARIANT` changes: recipe overrides, and worker-local patches for what no
# recipe key selects (see `apply_patches`). `gpu` variants are skipped on a CPU.
VARIANTS: dict[str, dict[str, Any]] = {
    "batch-128": {"overrides": ["training.batch_size=128"], "what": "4x the batch (128)"},
    "no-step-syncs": {
        "patches": ["no-step-syncs"],
        "what": "no per-step GPU reads: no non-padding token count, no non-finite-loss check",
    },
    "compile": {"overrides": ["training.compile=true"], "gpu": True, "what": "`training.compile: true`"},
    "foreach-adamw": {"patches": ["foreach"], "what": "foreach AdamW instead of the fused kernel"},
    "eager-attention": {"patches": ["eager"], "what": "eager attention instead of SDPA"},
}
DESCRIPTIONS = {
    "plain": "Trainer as the docs' guide writes it: fp32, random batches, dynamic padding",
    "expert": "plain + `group_by_length` + `bf16=True` (where the device has bf16); SDPA (default)",
    "finetune": "`finetune train`, defaults: bf16 auto, length-grouped batches, fused AdamW, SDPA",
}
DEFAULT_CONFIGS = [
    "plain",
    "expert",
    "finetune",
    "finetune+batch-128",
    "finetune+no-step-syncs",
    "finetune+compile",
    "finetune+foreach-adamw",
    "finetune+eager-attention",
    "finetune+batch-128+no-step-syncs+compile",
]
SIZES = {  # the full run and the CPU harness check
    "gpu": {"rows": 32768, "dev_rows": 1024, "max_length": 128, "warmup": 30, "steps": 5000, "seconds": 10.0},
    "tiny": {"rows": 768, "dev_rows": 32, "max_length": 64, "warmup": 2, "steps": 3, "seconds": 5.0},
}
VOCAB = 30522  # BertConfig's default vocabulary size


# ---- the model and the data ------------------------------------------------------------------------


def parse_config(name: str) -> tuple[str, list[str]]:
    """`finetune+compile+batch-128` -> ("finetune", ["compile", "batch-128"]); unknown parts are errors."""
    base, *variants = name.split("+")
    if base not in DESCRIPTIONS or (variants and base != "finetune"):
        raise SystemExit(
            f"--configs: unknown configuration {name!r}; known: plain, expert, finetune[+VARIANT...]"
        )
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"--configs: {name!r}: unknown variant {unknown[0]!r}; known: {', '.join(VARIANTS)}")
    return base, variants


def describe(name: str) -> str:
    base, variants = parse_config(name)
    return "; ".join([DESCRIPTIONS[base]] if not variants else [VARIANTS[v]["what"] for v in variants])


def write_model(folder: Path, tiny: bool, max_length: int) -> str:
    """BERT-base-sized (or a 2-layer tiny BERT) with random weights, and a tokenizer of made-up words."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    settings = {"num_labels": 2}
    if tiny:
        settings.update(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
    torch.manual_seed(SEED)
    BertForSequenceClassification(BertConfig(**settings)).save_pretrained(folder)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(VOCAB - 5)]
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(words)}, model_max_length=max_length)
    if len(tokenizer("w1 w2")["input_ids"]) != 4 or tokenizer.unk_token_id in tokenizer("w7")["input_ids"]:
        raise SystemExit("the synthetic tokenizer does not split one word per token with this transformers")
    tokenizer.save_pretrained(folder)
    return str(folder)


def synthetic_lengths(rows: int, max_length: int, seed: int = SEED) -> list[int]:
    """Real lengths with the spread of natural sentences and pairs: log-normal, median 47% of
    `max_length` (60 of 128), sigma 0.5, at least 8 tokens, truncated at `max_length` (about 7% are)."""
    rng = random.Random(seed)
    median = 0.47 * max_length
    return [min(max_length, max(8, round(rng.lognormvariate(math.log(median), 0.5)))) for _ in range(rows)]


def write_data(folder: Path, rows: int, dev_rows: int, max_length: int) -> dict[str, Any]:
    """train.tsv / dev.tsv of made-up words with random labels, as `bench_throughput`'s task dict."""
    rng = random.Random(SEED + 1)
    folder.mkdir(parents=True, exist_ok=True)
    for split, count, seed in (("train", rows, SEED), ("dev", dev_rows, SEED + 2)):
        lines = ["text\tlabel"]
        for length in synthetic_lengths(count, max_length, seed):
            words = " ".join(f"w{rng.randrange(VOCAB - 5)}" for _ in range(length - 2))  # + [CLS], [SEP]
            lines.append(f"{words}\t{rng.randrange(2)}")
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return {
        "dir": str(folder),
        "pair": False,
        "text": "text",
        "label": "label",
        "max_length": max_length,
        "metric": "accuracy",
    }


def padding_efficiency(lengths: list[int], batch: int = 32) -> float:
    """Real / padded tokens of random batches padded to their longest example (the plain Trainer)."""
    order = random.Random(SEED).sample(lengths, len(lengths))
    batches = [order[i : i + batch] for i in range(0, len(order), batch)]
    return sum(lengths) / sum(max(b) * len(b) for b in batches)


# ---- the worker: one configuration, one process -----------------------------------------------------


class StepWindow:
    """Times optimizer steps after a warm-up and stops training once the window is full."""

    def __init__(self, warmup: int, max_steps: int, max_seconds: float) -> None:
        from transformers import TrainerCallback

        window = self
        self.warmup, self.max_steps, self.max_seconds = warmup, max_steps, max_seconds
        self.started: float | None = None
        self.first_step = 0
        self.steps = 0
        self.seconds = 0.0
        self.details: dict[str, Any] = {}

        class Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
                window.details = run_details(args, model, optimizer)

            def on_step_end(self, args, state, control, **kwargs):
                window.step(state.global_step, control)

            def on_epoch_end(self, args, state, control, **kwargs):
                window.close(state.global_step)  # the data ran out before the window filled

        self.callback = Callback()

    def step(self, step: int, control: Any) -> None:
        if step == self.warmup:
            bt.EpochTimer.sync()
            self.started, self.first_step = time.perf_counter(), step
        elif self.started is not None and not self.seconds:
            elapsed = time.perf_counter() - self.started
            if step - self.first_step >= self.max_steps or elapsed >= self.max_seconds:
                self.close(step)
                control.should_training_stop = True

    def close(self, step: int) -> None:
        if self.started is not None and not self.seconds:
            bt.EpochTimer.sync()
            self.seconds = time.perf_counter() - self.started
            self.steps = step - self.first_step


def run_details(args: Any, model: Any, optimizer: Any) -> dict[str, Any]:
    """What actually ran: precision, batch, attention kernel, optimizer kernel, compilation."""
    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps it
    defaults = getattr(inner, "defaults", {}) or {}
    config = getattr(model, "config", None)
    return {
        "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
        "batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps,
        "attention": getattr(config, "_attn_implementation", None),
        "optimizer": type(inner).__name__,
        "fused": bool(defaults.get("fused")),
        "foreach": bool(defaults.get("foreach")),
        "compile": bool(args.torch_compile),
        "token_count": str(args.include_num_input_tokens_seen),
    }


def apply_patches(names: list[str]) -> None:
    """Worker-local changes for variants no recipe key selects (foreach AdamW, eager attention come
    from bench_throughput). `no-step-syncs` drops the two reads of a GPU value that finetune makes
    every step, so the CPU can queue the next step while the GPU runs this one."""
    for name in names:
        if name != "no-step-syncs":
            bt.apply_patch(name)
            continue
        import finetune.training.arguments as arguments_module
        from finetune.training.guards import FaultGuard

        build = arguments_module.training_arguments

        def without_token_count(recipe, output_dir, build=build):
            args = build(recipe, output_dir)
            args.include_num_input_tokens_seen = "no"
            return args

        arguments_module.training_arguments = without_token_count
        FaultGuard.observe_loss = lambda self, loss: None


def run_finetune(variants: list[str], task: dict, model_path: str, window: StepWindow, out: Path) -> Any:
    """`finetune train` through the pipeline with the recipe equivalent to the Trainer scripts."""
    apply_patches([p for v in variants for p in VARIANTS[v].get("patches", [])])
    from finetune.recipe import find_recipe, load_recipe
    from finetune.training.run import train

    overrides = bt.finetune_overrides("finetune", task, model_path, 1, out)
    overrides += [o for v in variants for o in VARIANTS[v].get("overrides", [])]
    recipe = load_recipe(str(find_recipe("base")), overrides)
    return train(recipe, callbacks=[window.callback]).trainer.model


def worker(spec: dict) -> dict:
    """Run one configuration and return its window: steps, seconds, samples/s, peak memory, details."""
    import resource

    import torch

    plan, out = spec["plan"], Path(spec["out"])
    base, variants = parse_config(spec["config"])
    window = StepWindow(plan["warmup"], plan["steps"], plan["seconds"])
    if base == "finetune":
        model = run_finetune(variants, plan["task"], plan["model"], window, out)
    else:
        expert = base == "expert"
        model = bt.run_trainer_script(
            plan["task"], plan["model"], 1, expert, expert and bt.native_bf16(), window, out
        )[0]
    if not window.steps:
        raise SystemExit(f"{spec['config']}: no step was timed (fewer than {plan['warmup'] + 1} steps ran)")
    config = model.config
    lengths = plan["lengths"]
    flops = bt.training_flops(
        bt.matmul_parameters(model), config.num_hidden_layers, config.hidden_size, lengths
    )
    samples = window.steps * window.details["batch_size"]
    result = {
        "config": spec["config"],
        "steps": window.steps,
        "seconds": window.seconds,
        "samples_per_second": samples / window.seconds,
        "flops_per_example": flops / len(lengths),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "details": window.details,
    }
    if torch.cuda.is_available():
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


# ---- the parent: budget, subprocesses, table --------------------------------------------------------


def run_one(config: str, plan: dict, work: Path, timeout: float, cpu: bool) -> dict:
    """One configuration in a fresh process; a failure or a timeout becomes a row that says so."""
    folder = Path(tempfile.mkdtemp(prefix=f"{config}-", dir=work))
    (folder / "spec.json").write_text(json.dumps({"config": config, "plan": plan, "out": str(folder)}))
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "true",
        "TRANSFORMERS_VERBOSITY": "error",
    }
    if cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    log = folder / "log.txt"
    command = [sys.executable, __file__, "--worker", str(folder / "spec.json")]
    try:
        with log.open("w") as handle:
            code = subprocess.run(
                command, stdout=handle, stderr=subprocess.STDOUT, env=env, timeout=timeout
            ).returncode
    except subprocess.TimeoutExpired:
        return {"config": config, "status": f"stopped at the time budget ({timeout:.0f} s)"}
    if code != 0 or not (folder / "result.json").exists():
        print(f"{config} failed (exit {code}); log {log}:\n{log.read_text()[-3000:]}", flush=True)
        return {"config": config, "status": f"failed (exit {code}); log {log}"}
    return {**json.loads((folder / "result.json").read_text()), "status": "ok"}


def estimate(config: str, done: list[dict]) -> float:
    """Seconds the next configuration likely needs: the slowest so far, 2.5x that when it compiles."""
    slowest = max((r["wall_seconds"] for r in done if "wall_seconds" in r), default=0.0)
    return slowest * (2.5 if "compile" in config else 1.0)


def run_all(configs: list[str], plan: dict, work: Path, budget: float, cpu: bool) -> list[dict]:
    """Every configuration in order while the budget lasts; the first three always start."""
    started, results = time.perf_counter(), []
    for index, config in enumerate(configs):
        left = budget - (time.perf_counter() - started)
        if any(VARIANTS[v].get("gpu") for v in parse_config(config)[1]) and cpu:
            results.append({"config": config, "status": "skipped: GPU only"})
        elif index >= 3 and left < estimate(config, results):
            results.append({"config": config, "status": f"skipped: {left:.0f} s of the budget left"})
        else:
            begun = time.perf_counter()
            result = run_one(config, plan, work, max(left, 30.0), cpu)
            result["wall_seconds"] = time.perf_counter() - begun
            results.append(result)
        print(progress_line(results[-1]), flush=True)
    return results


def progress_line(result: dict) -> str:
    if result["status"] != "ok":
        return f"{result['config']:44s} {result['status']}"
    return (
        f"{result['config']:44s} {result['samples_per_second']:10.1f} samples/s over {result['steps']} steps "
        f"({result['wall_seconds']:.0f} s in all)"
    )


def complete(results: list[dict], mean_length: float, peak: float | None) -> None:
    """Add real tokens/s, MFU and the ratios to plain and expert to each measured row."""
    rate = {r["config"]: r["samples_per_second"] for r in results if r["status"] == "ok"}
    for r in results:
        if r["status"] != "ok":
            continue
        r["tokens_per_second"] = r["samples_per_second"] * mean_length
        r["mfu"] = r["samples_per_second"] * r["flops_per_example"] / peak if peak else None
        for other in ("plain", "expert"):
            r[f"vs_{other}"] = r["samples_per_second"] / rate[other] if other in rate else None


def table(results: list[dict], memory: str) -> str:
    def ratio(value):
        return f"{value:.2f}x" if value else "-"

    lines = [
        f"| configuration | samples/s | real tokens/s | MFU | peak {memory} MB | vs plain | vs expert | "
        "steps timed | ran as | what it changes |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        if r["status"] != "ok":
            lines.append(f"| {r['config']} | {r['status']} | | | | | | | | {describe(r['config'])} |")
            continue
        d = r["details"]
        kernel = "fused" if d["fused"] else "foreach" if d["foreach"] else "for-loop"
        ran = f"{d['precision']}, batch {d['batch_size']}, {d['attention']}, {kernel} {d['optimizer']}"
        ran += ", compiled" if d["compile"] else ""
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        memory_mb = r.get("peak_gpu_mb", r["peak_rss_mb"])
        lines.append(
            f"| {r['config']} | {r['samples_per_second']:.1f} | {r['tokens_per_second']:.0f} | {mfu} | "
            f"{memory_mb:.0f} | {ratio(r['vs_plain'])} | {ratio(r['vs_expert'])} | {r['steps']} | {ran} | "
            f"{describe(r['config'])} |"
        )
    return "\n".join(lines)


def device_name(cpu: bool) -> str:
    import torch

    if torch.cuda.is_available() and not cpu:
        return torch.cuda.get_device_name(0)
    return platform.processor() or platform.machine() or "cpu"


def report(
    args, results: list[dict], sizes: dict, lengths: list[int], device: str, peak: float | None
) -> str:
    """The Markdown page: device, model, data, method, table, and what the targets say."""
    mode = "tiny harness check on the CPU, not a measurement" if args.tiny else "one window per configuration"
    quantiles = statistics.quantiles(lengths, n=10)
    model = (
        "2-layer tiny BERT (hidden 32)"
        if args.tiny
        else "BERT-base-sized (`BertConfig()`, 110M), random weights"
    )
    peak_text = f"{peak / 1e12:.0f} TFLOP/s dense bf16" if peak else "unknown (MFU n/a; give --peak-tflops)"
    return "\n".join(
        [
            f"# GPU throughput ({mode})",
            "",
            f"Device: **{device}**; peak {peak_text}. Machine: {bt.machine()}.",
            f"Model: {model}, full fine-tuning, `max_length` {sizes['max_length']}.",
            f"Data: {sizes['rows']:,} synthetic training rows, real lengths mean {statistics.mean(lengths):.1f}, "
            f"median {statistics.median(lengths):.0f}, p90 {quantiles[-1]:.0f}, max {max(lengths)} "
            f"({sum(t == sizes['max_length'] for t in lengths) / len(lengths):.0%} truncated); random batches "
            f"of 32 are {padding_efficiency(lengths):.0%} real tokens.",
            f"Window: {sizes['warmup']} warm-up steps skipped, then at most {sizes['seconds']:g} s or "
            f"{sizes['steps']} steps timed; lr {bt.HYPER['lr']}, seed {SEED}; one round.",
            f"Command: `python scripts/bench_gpu.py {' '.join(args.argv)}`.",
            "",
            table(results, "GPU" if any("peak_gpu_mb" in r for r in results) else "RSS"),
            "",
            targets(results),
            "",
        ]
    )


def targets(results: list[dict]) -> str:
    """The issue's targets for `finetune` (defaults) on an H100/H200."""
    row = next((r for r in results if r["config"] == "finetune" and r["status"] == "ok"), None)
    if row is None:
        return "Targets: `finetune` did not run."
    checks = [
        ("MFU >= 40%", row["mfu"], 0.40, "{:.1%}"),
        ("finetune / plain >= 1.3x", row.get("vs_plain"), 1.3, "{:.2f}x"),
        ("finetune / expert >= 1.1x", row.get("vs_expert"), 1.1, "{:.2f}x"),
    ]
    parts = []
    for label, value, goal, fmt in checks:
        verdict = (
            "n/a" if value is None else ("met" if value >= goal else "NOT met") + f" ({fmt.format(value)})"
        )
        parts.append(f"{label}: {verdict}")
    return "Targets (finetune defaults, H100/H200): " + "; ".join(parts) + "."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="2-layer tiny BERT, few rows: checks the harness")
    parser.add_argument("--device", choices=["auto", "cpu"], default="auto", help="cpu: hide the GPUs")
    parser.add_argument("--configs", default=",".join(DEFAULT_CONFIGS), help="comma-separated, in run order")
    parser.add_argument("--max-seconds", type=float, default=420.0, help="budget for all configurations")
    parser.add_argument("--window-seconds", type=float, default=None, help="timed seconds per configuration")
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of an unlisted GPU")
    parser.add_argument("--out", default="throughput-gpu", help="file stem")
    parser.add_argument("--out-dir", default=str(OUT), help="folder for the .md and .json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = argv if argv is not None else sys.argv[1:]
    if args.worker:
        spec = json.loads(Path(args.worker).read_text())
        (Path(spec["out"]) / "result.json").write_text(json.dumps(worker(spec), indent=1))
        return 0
    import torch

    cpu = args.device == "cpu" or not torch.cuda.is_available()
    if cpu and not args.tiny:
        raise SystemExit("no GPU here: this benchmark is for a GPU; `--tiny --device cpu` checks the harness")
    configs = args.configs.split(",")
    for config in configs:
        parse_config(config)
    sizes = dict(SIZES["tiny" if args.tiny else "gpu"])
    sizes["seconds"] = args.window_seconds or sizes["seconds"]
    work = Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    lengths = synthetic_lengths(sizes["rows"], sizes["max_length"])
    plan = {
        "task": write_data(work / "data", sizes["rows"], sizes["dev_rows"], sizes["max_length"]),
        "model": write_model(work / "model", args.tiny, sizes["max_length"]),
        "lengths": lengths,
        "warmup": sizes["warmup"],
        "steps": sizes["steps"],
        "seconds": sizes["seconds"],
    }
    device = device_name(cpu)
    peak = args.peak_tflops * 1e12 if args.peak_tflops else None if cpu else bt.peak_flops(device)
    print(f"device: {device}\nwork folder: {work}", flush=True)
    results = run_all(configs, plan, work, args.max_seconds, cpu)
    complete(results, statistics.mean(lengths), peak)
    text = report(args, results, sizes, lengths, device, peak)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.out}.md").write_text(text)
    summary = {
        "device": device,
        "machine": bt.machine(),
        "peak_flops": peak,
        "sizes": sizes,
        "results": results,
    }
    (out / f"{args.out}.json").write_text(json.dumps(summary, indent=1))
    print("\n" + text + f"\nwritten: {out / args.out}.md")
    return 0 if all(r["status"] == "ok" or r["status"].startswith("skipped") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
