"""What a run leaves for people: `report.md` in the run folder and a model card in `model/README.md`.

Both are written at the end of `finetune train` from the files the run already wrote
(`recipe.yaml`, `results.json`, `metrics.jsonl`, the plots), so `finetune report RUN_DIR`
can write them again for any run folder, old ones included. This module writes `report.md`;
the model card is runs/model_card.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from finetune.runs.folders import METRICS_FILE, MODEL_DIR, RECIPE_FILE, RESULTS_FILE, during_training
from finetune.runs.model_card import write_model_card
from finetune.runs.plots import CALIBRATION_PLOT
from finetune.runs.reading import TASK_WORDS, changed_keys, duration, read_run, show, show_value, table

REPORT_FILE = "report.md"
PLOTS = (
    ("lr.png", "Learning rate"),
    ("loss.png", "Training and validation loss"),
    ("metrics.png", "Validation metrics"),
)


def _summary(run: dict[str, Any]) -> str:
    recipe, results = run["recipe"], run["results"]
    task = results.get("task") or recipe.get("model", {}).get("task", "classification")
    data = results.get("data", {})
    labels = results.get("labels")
    what = TASK_WORDS.get(task, task)
    if task == "classification" and recipe.get("data", {}).get("text_pair") is not None:
        what = "sentence-pair classification"
    label_text = f" with labels {', '.join(labels)}" if labels and len(labels) <= 12 else ""
    if labels and len(labels) > 12:
        label_text = f" with {len(labels)} labels"
    lines = [
        f"Fine-tuned **{results.get('model', recipe.get('model', {}).get('name'))}** for {what}{label_text}, "
        f"on {data.get('train', '?'):,} training and {data.get('validation', '?'):,} validation examples."
    ]
    if results.get("steps") is not None:
        ended = "ended early: " if results.get("status") in STOPPED else ""
        lines.append(
            f"Training ran {results['steps']:,} optimizer steps ({results.get('epochs', 0):g} epochs) in "
            f"{duration(results.get('train_seconds'))} and {ended}{results.get('stop_reason', 'ended')}."
        )
    if results.get("best", {}).get("step") is not None:
        lines.append(_best_weights(run))
    return " ".join(lines)


STOPPED = ("diverged", "interrupted")  # statuses of runs a fault stopped (training/guards.py)


def _best_weights(run: dict[str, Any]) -> str:
    """The best evaluation, and what became of its weights: only what the run actually did with them."""
    results = run["results"]
    best = results["best"]
    found = (
        f"The best validation {results['metric']} was **{show(best['value'])}** at step {best['step']} "
        f"(epoch {best.get('epoch') or 0:g})"
    )
    if results.get("status") == "interrupted":
        resume = results.get("resume_command")
        return f"{found}; the run was interrupted before saving them" + (
            f": continue with `{resume}`." if resume else "."
        )
    done = ["restored"]
    if results.get("final_metrics"):
        reused = results.get("final_evaluation", "evaluated") != "evaluated"
        done.append("scored by that evaluation (the last, not repeated)" if reused else "evaluated again")
    if (run["dir"] / MODEL_DIR).is_dir():
        done.append("saved in `model/`")
    listed = done[0] if len(done) == 1 else f"{', '.join(done[:-1])} and {done[-1]}"
    return f"{found}; those weights were {listed}."


def _results_section(results: dict[str, Any]) -> list[str]:
    initial, final = results.get("initial_metrics", {}), results.get("final_metrics", {})
    names = list(dict.fromkeys([*final, *initial]))
    if not names:
        return []
    watched = results.get("metric")
    baseline = (results.get("learning_check") or {}).get("baseline") or {}
    constant = baseline.get("metrics", {})
    columns = [("before training", initial)] + ([("after (best weights)", final)] if final else [])
    if constant:
        columns.append(("constant answer", constant))
    rows = [
        [f"**{n}** (watched)" if n == watched else n, *(values.get(n, "-") for _, values in columns)]
        for n in names
    ]
    note = [f"Constant answer: {baseline['answer']}.", ""] if constant else []
    return [
        "## Results",
        "",
        *table(["validation metric", *(title for title, _ in columns)], rows),
        "",
        *note,
    ]


def _calibration_section(results: dict[str, Any], run_dir: Path) -> list[str]:
    """Temperature scaling (finetune/calibration/): T, ECE and NLL before and after, the diagram."""
    calibration = results.get("calibration")
    if not calibration:
        return []
    if "skipped" in calibration:
        return ["## Calibration", "", f"Temperature scaling {calibration['skipped']}.", ""]
    rows = [
        ["temperature", "1", show(calibration["temperature"])],
        [
            f"ECE ({calibration['bins']} bins)",
            show(calibration["ece_before"]),
            show(calibration["ece_after"]),
        ],
        ["NLL", show(calibration["nll_before"]), show(calibration["nll_after"])],
    ]
    plot = (
        [f"![Reliability diagram]({CALIBRATION_PLOT})", ""] if (run_dir / CALIBRATION_PLOT).is_file() else []
    )
    return [
        "## Calibration",
        "",
        f"Temperature scaling fitted on the {calibration['examples']:,} validation examples and folded into "
        f"the saved head (logits / T): the saved model's probabilities are the calibrated ones; its "
        f"answers, and every accuracy metric, are unchanged. The figures after are measured on the "
        f"split T was fitted on, so they flatter it a little (benchmarks/calibration.md measures on "
        f"held-out data).",
        "",
        *table(["validation", "before", "after"], rows),
        "",
        *plot,
    ]


def _learning_warning(results: dict[str, Any]) -> list[str]:
    """A run that learned nothing says so before anything else (training/learning_check.py)."""
    check = results.get("learning_check") or {}
    if check.get("learned", True):
        return []
    problems = [f"> - {p}" for p in check.get("problems", [])]
    return [
        "> **Warning: this run learned nothing useful.**",
        ">",
        *problems,
        ">",
        f"> {check.get('advice')}",
        "",
    ]


def _evaluations(run: dict[str, Any]) -> list[str]:
    watched = run["results"].get("metric")
    best_step = run["results"].get("best", {}).get("step")
    key = f"eval_{watched}"
    training = during_training(run["metrics"])
    evals = [r for r in training if key in r]
    if not evals:
        return []
    rows = []
    for record in evals:
        mark = " ← best" if record["step"] == best_step else ""
        step = f"{record['step']} (before training)" if record["step"] == 0 else str(record["step"])
        rows.append(
            [step, f"{record.get('epoch', 0):g}", f"{show(record[key])}{mark}", record.get("eval_loss", "-")]
        )
    return ["### Every evaluation", "", *table(["step", "epoch", watched, "validation loss"], rows), ""]


def _plots(run_dir: Path) -> list[str]:
    present = [(name, title) for name, title in PLOTS if (run_dir / name).is_file()]
    if not present:
        return []
    lines = ["## Curves", ""]
    for name, title in present:
        lines += [f"**{title}**", "", f"![{title}]({name})", ""]
    return lines


def _what_trained(recipe: dict[str, Any], results: dict[str, Any]) -> list[str]:
    trainable, total = results.get("trainable_parameters"), results.get("total_parameters")
    lines = ["## What trained", ""]
    if trainable is not None and total:
        lines.append(f"- Trainable parameters: {trainable:,} of {total:,} ({trainable / total:.1%}).")
    frozen = results.get("frozen_blocks") or []
    peft = recipe.get("peft", {})
    if peft.get("method", "none") == "none":
        lines.append(
            f"- Frozen: {', '.join(frozen)}."
            if frozen
            else "- Frozen: nothing (every pretrained block trained)."
        )
        return [*lines, ""]
    settings = (
        f"rank {peft.get('r')}, alpha {show_value(peft.get('alpha'))}, " if peft["method"] == "lora" else ""
    )
    targets = (
        show_value(peft["target_modules"])
        if peft.get("target_modules")
        else "the architecture's default modules"
    )
    lines.append(
        f"- Adapters: {peft['method']} ({settings}on {targets}). Every pretrained weight stayed frozen; the "
        f"adapters, the task head and the pooler trained. Saved {peft.get('save', 'merged')}."
    )
    if frozen:
        lines.append(f"- Frozen by `freeze:` (their adapters did not train): {', '.join(frozen)}.")
    return [*lines, ""]


def _recipe_section(recipe: dict[str, Any]) -> list[str]:
    changed = changed_keys(recipe)
    lines = ["## Recipe", ""]
    if changed:
        lines += [
            "Keys that differ from finetune's defaults (the full resolved recipe is in `recipe.yaml`):",
            "",
            *table(["key", "value"], [[f"`{k}`", f"`{show_value(v)}`"] for k, v in changed.items()]),
        ]
    else:
        lines.append("Every key at finetune's default (see `recipe.yaml`).")
    return [*lines, ""]


def _data_section(results: dict[str, Any]) -> list[str]:
    data = results.get("data", {})
    sources = data.get("sources", {})
    lines = ["## Data", ""]
    for split in ("train", "validation"):
        if split in data:
            lines.append(f"- {split}: {data[split]:,} examples from `{sources.get(split, '?')}`")
    labels = results.get("labels")
    if labels:
        lines.append(f"- labels ({len(labels)}): {', '.join(labels)}")
    return [*lines, ""]


def _number(value: Any, decimals: int = 0) -> str:
    return f"{value:,.{decimals}f}" if isinstance(value, (int, float)) else "?"


def _cost_section(results: dict[str, Any]) -> list[str]:
    env = results.get("environment", {})
    rows = [
        ["training time", duration(results.get("train_seconds"))],
        ["wall time (loading, evaluations, saving included)", duration(results.get("wall_seconds"))],
        [
            "training throughput",
            f"{_number(results.get('train_samples_per_second'), 1)} examples/s (evaluations excluded)",
        ],
        [
            "training throughput",
            f"{_number(results.get('train_tokens_per_second'))} tokens/s (padding excluded)",
        ],
        ["peak memory (process RSS)", f"{_number(results.get('peak_rss_mb'))} MiB"],
    ]
    if "peak_gpu_memory_mb" in results:
        rows.append(["peak GPU memory", f"{_number(results['peak_gpu_memory_mb'])} MiB"])
    rows.append(["device", env.get("device", "?")])
    versions = ", ".join(f"{k} {v}" for k, v in env.items() if k != "device")
    return ["## Time and memory", "", *table(["", ""], rows), "", f"Versions: {versions}.", ""]


def _usage_section(run_dir: Path) -> list[str]:
    lines = ["## Reproduce and use", "", "```"]
    lines.append(f"finetune train {run_dir / RECIPE_FILE} output.dir={run_dir}-again   # the same run again")
    if (run_dir / MODEL_DIR).is_dir():
        lines += [
            f"finetune predict {run_dir} --input texts.csv --output predictions.jsonl",
            f"finetune evaluate {run_dir} --data labelled.csv",
        ]
    return [*lines, "```", ""]


def render_report(run: dict[str, Any]) -> str:
    """The markdown of `report.md` for a read run folder."""
    recipe, results, run_dir = run["recipe"], run["results"], run["dir"]
    name = recipe.get("name") or run_dir.name
    lines = [f"# Run `{name}`", "", f"`{run_dir}`", ""]
    if not results:
        lines += ["This run has no `results.json`: it did not finish.", ""]
    else:
        lines += _learning_warning(results) + [_summary(run), ""]
        lines += _results_section(results) + _calibration_section(results, run_dir) + _evaluations(run)
    lines += _plots(run_dir)
    if results:
        lines += _what_trained(recipe, results)
    lines += _recipe_section(recipe)
    if results:
        lines += _data_section(results) + _cost_section(results)
    lines += _usage_section(run_dir)
    lines.append(f"Files: `{RECIPE_FILE}` (resolved recipe), `{RESULTS_FILE}`, `{METRICS_FILE}` (every log).")
    return "\n".join(lines) + "\n"


def write_report(run_dir: Path) -> Path:
    """Write `<run>/report.md` from the run folder's files."""
    path = Path(run_dir) / REPORT_FILE
    path.write_text(render_report(read_run(run_dir)), encoding="utf-8")
    return path


def write_run_documents(run_dir: Path) -> list[Path]:
    """`report.md` and the model card; returns the files written."""
    written = [write_report(run_dir), write_model_card(run_dir)]
    return [path for path in written if path is not None]
