"""The model card: `model/README.md` of a run folder, for whoever uses the saved model.

Hub metadata (base model, pipeline tag, metrics), intended use and limitations, training data,
the recipe keys that differ from the defaults, the saved weights' validation metrics, and how to
load the model. Written from the run folder's files, like `report.md` (runs/report.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from finetune.runs.folders import MODEL_DIR
from finetune.runs.reading import TASK_WORDS, changed_keys, read_run, show_value, table

MODEL_CARD = "README.md"
# Hub ids of the models behind finetune's aliases (for the model card's `base_model`).
ALIAS_HUB_IDS = {"minilm-l6": "sentence-transformers/all-MiniLM-L6-v2"}


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
