"""What a run leaves for people: `report.md` in the run folder and a model card in `model/README.md`.

Both are written at the end of `finetune train` from the files the run already wrote
(`recipe.yaml`, `results.json`, `metrics.jsonl`, the plots), so `finetune report RUN_DIR`
can write them again for any run folder, old ones included.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from finetune.errors import FinetuneError
from finetune.runs.folders import (
    METRICS_FILE,
    MODEL_DIR,
    RECIPE_FILE,
    RESULTS_FILE,
    during_training,
    read_metrics,
)

REPORT_FILE = "report.md"
MODEL_CARD = "README.md"
PLOTS = (
    ("lr.png", "Learning rate"),
    ("loss.png", "Training and validation loss"),
    ("metrics.png", "Validation metrics"),
)
# Recipe keys that name where a run went rather than what it did.
BOOKKEEPING = ("name", "output.dir", "output.root")
# Hub ids of the models behind finetune's aliases (for the model card's `base_model`).
ALIAS_HUB_IDS = {"minilm-l6": "sentence-transformers/all-MiniLM-L6-v2"}
TASK_WORDS = {
    "classification": "text classification",
    "regression": "regression",
    "multi_label": "multi-label classification",
    "token_classification": "token classification",
}


def read_run(run_dir: Path) -> dict[str, Any]:
    """A run folder's recipe (as plain data), results and metric records; a clear error if it is not one."""
    run_dir = Path(run_dir)
    if not (run_dir / RECIPE_FILE).is_file():
        raise FinetuneError(
            f"{run_dir}: not a run folder (no {RECIPE_FILE}); give a folder `finetune train` wrote"
        )
    recipe = yaml.safe_load((run_dir / RECIPE_FILE).read_text(encoding="utf-8")) or {}
    results_path = run_dir / RESULTS_FILE
    results = json.loads(results_path.read_text(encoding="utf-8")) if results_path.is_file() else {}
    return {"dir": run_dir, "recipe": recipe, "results": results, "metrics": read_metrics(run_dir)}


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"optimizer": {"lr": 1e-4}}` -> `{"optimizer.lr": 1e-4}` (lists stay values)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def changed_keys(recipe: dict[str, Any]) -> dict[str, Any]:
    """The recipe keys whose value differs from finetune's defaults (bookkeeping keys left out)."""
    from finetune.recipe import Recipe

    defaults = flatten(Recipe().to_yaml_dict())
    return {
        key: value
        for key, value in flatten(recipe).items()
        if key not in BOOKKEEPING and (key not in defaults or defaults[key] != value)
    }


def show(value: Any) -> str:
    """A metric as a reader wants it: 4 decimals (3 significant digits when tiny or huge)."""
    if isinstance(value, float):
        return f"{value:.4f}" if value == 0 or 1e-3 <= abs(value) < 1e4 else f"{value:.3g}"
    return show_value(value)


def show_value(value: Any) -> str:
    """A recipe value as written in YAML: `0.0001`, `3`, `null`, `[0, 1]`."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(show_value(v) for v in value) + "]"
    return str(value)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{seconds:.1f} s"


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return lines + [
        "| " + " | ".join(show(cell) if not isinstance(cell, str) else cell for cell in row) + " |"
        for row in rows
    ]


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
        done.append("evaluated again")
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
        ["training throughput", f"{_number(results.get('train_samples_per_second'), 1)} examples/s"],
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
        lines += _results_section(results) + _evaluations(run)
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


def _base_model(name: str) -> str | None:
    """The hub id of the base model, for the card's metadata (local folders have none)."""
    if name in ALIAS_HUB_IDS:
        return ALIAS_HUB_IDS[name]
    if Path(name).expanduser().exists() or name.startswith((".", "/", "~")):
        return None
    return name


def _card_metadata(recipe: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    task = results.get("task", "classification")
    pipeline_tag = "token-classification" if task == "token_classification" else "text-classification"
    meta: dict[str, Any] = {
        "library_name": "transformers",
        "pipeline_tag": pipeline_tag,
        "tags": ["finetune", task],
    }
    base = _base_model(recipe.get("model", {}).get("name", ""))
    if base:
        meta["base_model"] = base
    if results.get("final_metrics"):
        meta["metrics"] = [m for m in results["final_metrics"] if m != "loss"]
    return meta


def _intended_use(results: dict[str, Any], recipe: dict[str, Any]) -> str:
    task = results.get("task", "classification")
    labels = ", ".join(results.get("labels") or [])
    pair = recipe.get("data", {}).get("text_pair") is not None
    what = {
        "classification": f"assigns one of the labels ({labels}) to a {'pair of texts' if pair else 'text'}",
        "regression": f"predicts a number for a {'pair of texts' if pair else 'text'}",
        "multi_label": f"assigns any subset of the labels ({labels}) to a text",
        "token_classification": f"tags each word of a text with one of {labels}",
    }.get(task, task)
    max_length = recipe.get("data", {}).get("max_length")
    return (
        f"This model {what}. It is meant for texts like those it was trained on (see *Training data*); "
        f"check it on a labelled sample of your own texts (`finetune evaluate`) before relying on it. "
        f"Inputs longer than {max_length} tokens are truncated. It inherits the biases of its base model "
        f"and of its training data, and it is not meant for decisions about people without human review."
    )


def render_model_card(run: dict[str, Any]) -> str:
    """The model card (`model/README.md`): metadata, intended use, data, procedure, results, usage."""
    recipe, results = run["recipe"], run["results"]
    name = recipe.get("name") or run["dir"].name
    front = yaml.safe_dump(_card_metadata(recipe, results), sort_keys=False).strip()
    task = results.get("task", "classification")
    pipeline_tag = "token-classification" if task == "token_classification" else "text-classification"
    data = results.get("data", {})
    lines = [
        "---",
        front,
        "---",
        "",
        f"# {name}",
        "",
        f"`{recipe.get('model', {}).get('name')}` fine-tuned for {TASK_WORDS.get(task, task)} with finetune, "
        f"from the recipe summarised below.",
        "",
        "## Intended use and limitations",
        "",
        _intended_use(results, recipe),
        "",
        "## Training data",
        "",
        *(
            f"- {split}: {data[split]:,} examples from `{data.get('sources', {}).get(split, '?')}`"
            for split in ("train", "validation")
            if split in data
        ),
        "",
        "## Training procedure",
        "",
        "Recipe keys that differ from finetune's defaults (the full resolved recipe is `recipe.yaml` in the run folder):",
        "",
        *table(["key", "value"], [[f"`{k}`", f"`{show_value(v)}`"] for k, v in changed_keys(recipe).items()]),
        "",
        f"Stopped: {results.get('stop_reason', '?')}; best {results.get('metric')} at step "
        f"{results.get('best', {}).get('step')}; trainable parameters {results.get('trainable_parameters', 0):,} "
        f"of {results.get('total_parameters', 0):,}.",
        "",
        "## Evaluation results",
        "",
        *_card_results(results),
        "## How to use",
        "",
        "```python",
        "from transformers import pipeline",
        "",
        f'model = pipeline("{pipeline_tag}", model="path/to/this/folder")',
        'print(model("Your text here."))',
        "```",
        "",
        "or, for a file: `finetune predict path/to/this/folder --input texts.csv --output predictions.jsonl`.",
    ]
    if (run["dir"] / MODEL_DIR / "adapter_config.json").is_file():
        lines += [
            "",
            "This folder holds adapter weights only (`peft.save: adapter`): load it with",
            "`finetune.model.peft.load_adapted_model(folder)` or `finetune predict`, not `pipeline`.",
        ]
    return "\n".join(lines) + "\n"


def _card_results(results: dict[str, Any]) -> list[str]:
    """The saved weights' validation metrics, or why there are none."""
    final = results.get("final_metrics", {})
    if not final:
        return [
            f"Not evaluated after training: the run ended early ({results.get('stop_reason', '?')}). These are "
            f"the weights of its best evaluation during training; `report.md` in the run folder lists them all.",
            "",
        ]
    table_lines = table(["metric", "value"], [[k, v] for k, v in final.items()])
    return ["On the validation split, with the saved (best) weights:", "", *table_lines, ""]


def write_model_card(run_dir: Path) -> Path | None:
    """Write `<run>/model/README.md` (when the run saved a model)."""
    folder = Path(run_dir) / MODEL_DIR
    if not folder.is_dir():
        return None
    path = folder / MODEL_CARD
    path.write_text(render_model_card(read_run(run_dir)), encoding="utf-8")
    return path


def write_run_documents(run_dir: Path) -> list[Path]:
    """`report.md` and the model card; returns the files written."""
    written = [write_report(run_dir), write_model_card(run_dir)]
    return [path for path in written if path is not None]
