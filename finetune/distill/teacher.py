"""The teacher of `distill:`: found, loaded, checked against the student's task and tokenizer, and
run once over the training texts before the first step.

The teacher is frozen, so its output for a training example never changes: it is computed once
(eval mode, no dropout, no gradients) and every epoch reuses it; the teacher's weights are then
released. Outputs are keyed by the example's token ids as the student sees them (and its token
types), like the prefix cache (model/prefix_cache.py): the Trainer drops dataset columns its model's
forward does not take, so an index column would not reach the loss, while the ids always do. The
lookup is therefore right under any order (shuffled, length-grouped, balanced draws, several
processes), and the same text twice has one output. The loss term itself is in
regularization/losses.py (`distillation_loss`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from finetune.calibration.calibrate import CONFIG_KEY as CALIBRATION_KEY
from finetune.data.columns import column_values
from finetune.data.task_data import tokenize
from finetune.distributed.processes import say
from finetune.errors import FinetuneError
from finetune.model.loading import ALIASES, PROBLEM_TYPES, check_max_length, model_class, resolve_model_path
from finetune.model.peft import ADAPTER_CONFIG, is_adapter_folder, load_adapted_model
from finetune.recipe import Recipe
from finetune.recipe.distill import DistillSection
from finetune.runs.folders import MODEL_DIR, RECIPE_FILE

TOKENIZER_SAMPLE = 64  # training texts both tokenizers must split alike (`distill.tokenizer: same`)


def teacher_source(spec: DistillSection) -> str:
    """The teacher's model: a run folder's `model/`, a model folder, an alias, or a hub id (as given)."""
    name = str(spec.teacher)
    path = Path(name).expanduser()
    if (path / RECIPE_FILE).is_file():
        if not (path / MODEL_DIR).is_dir():
            raise FinetuneError(
                f"distill.teacher: the run {path} saved no model (output.save_model: false); train the "
                f"teacher again with output.save_model: true"
            )
        return str(path / MODEL_DIR)
    if path.is_dir():
        if not ((path / "config.json").is_file() or (path / ADAPTER_CONFIG).is_file()):
            raise FinetuneError(
                f"distill.teacher: {path} is neither a run folder (with {RECIPE_FILE}) nor a model "
                f"folder (with config.json)"
            )
        return str(path)
    if name in ALIASES:
        return resolve_model_path(name)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise FinetuneError(f"distill.teacher: folder {name} does not exist; {TRAIN_FIRST}")
    return name  # a hub id: `teacher_config` says whether it loads


TRAIN_FIRST = "train the teacher first (`finetune train ...`) and give its run folder"


def teacher_config(spec: DistillSection) -> Any:
    """The teacher's config (what `finetune validate` checks: the teacher exists and loads)."""
    from transformers import AutoConfig

    source = teacher_source(spec)
    try:
        return AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise FinetuneError(
            f"distill.teacher: '{spec.teacher}' is not a run folder, a model folder, or a hub model that "
            f"can be loaded ({first}); {TRAIN_FIRST}"
        ) from None


def load_teacher(source: str, task: str) -> tuple[Any, Any]:
    """(model, tokenizer) of the teacher; an adapter-only save is loaded on its base model, merged."""
    from transformers import AutoTokenizer

    if is_adapter_folder(Path(source)):
        model = load_adapted_model(Path(source))
    else:
        model = model_class(task).from_pretrained(source)
    return model, AutoTokenizer.from_pretrained(source)


def check_teacher_task(config: Any, task: str, label_names: list[str] | None, name: str) -> None:
    """The teacher answers this task: the same kind of output, and the same labels in the same order."""
    trained_for = getattr(config, "problem_type", None)
    if trained_for is not None and PROBLEM_TYPES.get(task) not in (None, trained_for):
        raise FinetuneError(
            f"distill.teacher: {name} was trained for {trained_for}, the student for {PROBLEM_TYPES[task]} "
            f"(model.task: {task}); give a teacher fine-tuned on this task"
        )
    if label_names is None:  # regression: one output
        if config.num_labels != 1:
            raise FinetuneError(
                f"distill.teacher: {name} has {config.num_labels} outputs; regression needs a teacher with one"
            )
        return
    teacher_labels = [str(config.id2label.get(i, i)) for i in range(config.num_labels)]
    if teacher_labels != [str(label) for label in label_names]:
        raise FinetuneError(
            f"distill.teacher: {name} predicts the labels {teacher_labels}, the student's data has "
            f"{list(label_names)} (same names in the same order needed); give a teacher fine-tuned on "
            f"this data's labels"
        )


def check_same_tokenizer(
    teacher: Any, student: Any, train: Any, max_length: int, names: tuple[str, str]
) -> None:
    """`distill.tokenizer: same`: both tokenizers give the same ids for the first training texts."""
    sample = train.select(range(min(TOKENIZER_SAMPLE, len(train))))
    texts = column_values(sample, "text")
    pairs = column_values(sample, "text_pair") if "text_pair" in sample.column_names else None
    options = {"truncation": True, "max_length": max_length}
    ours, theirs = (t(texts, pairs, **options)["input_ids"] for t in (student, teacher))
    for text, mine, other in zip(texts, ours, theirs):
        if mine != other:
            raise FinetuneError(
                f"distill.tokenizer: the teacher {names[0]} splits texts into other token ids than the "
                f"student {names[1]} (e.g. {text[:60]!r}); give a teacher with the student's tokenizer, "
                f"or set distill.tokenizer: own to let the teacher read each text with its own"
            )


def teacher_device(cpu: bool) -> torch.device:
    """Where the teacher runs: this process's GPU when training uses one."""
    if cpu or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def compute_teacher_logits(
    model: Any, tokenizer: Any, encoded: Any, batch_size: int, device: torch.device
) -> torch.Tensor:
    """The teacher's logits for every row of `encoded` (tokenized rows, unpadded), in row order:
    eval mode, no gradients, longest rows first so each batch pads little."""
    inputs = [c for c in encoded.column_names if c in ("input_ids", "attention_mask", "token_type_ids")]
    rows = encoded.select_columns(inputs)
    order = np.argsort(-np.asarray([len(ids) for ids in rows["input_ids"]]), kind="stable")
    model.to(device).eval()
    out: list[torch.Tensor | None] = [None] * len(rows)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size].tolist()
            batch = tokenizer.pad(rows.select(chosen).to_list(), return_tensors="pt")
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu()
            for row, value in zip(chosen, logits):
                out[row] = value
    return torch.stack(out) if out else torch.empty(0)


def example_key(ids: Any, types: Any = None) -> bytes:
    """An example's key: its real token ids (and token types) as bytes."""
    key = np.asarray(ids, dtype=np.int64).tobytes()
    return key if types is None else key + b"|" + np.asarray(types, dtype=np.int64).tobytes()


class TeacherLogits:
    """The teacher's output for each training example, found by the example's token ids."""

    def __init__(self, keys: list[bytes], logits: torch.Tensor, summary: dict[str, Any]) -> None:
        self.by_key = {key: row for key, row in zip(keys, logits)}
        self.summary = summary

    def lookup(self, inputs: dict[str, Any]) -> torch.Tensor:
        """One row of teacher logits per example of a (padded) batch, on the batch's device."""
        ids = inputs["input_ids"].detach().cpu().numpy()
        mask = inputs.get("attention_mask")
        mask = np.ones_like(ids, bool) if mask is None else mask.detach().cpu().numpy().astype(bool)
        types = inputs.get("token_type_ids")
        types = None if types is None else types.detach().cpu().numpy()
        keys = [
            example_key(ids[i][mask[i]], None if types is None else types[i][mask[i]])
            for i in range(len(ids))
        ]
        missing = sum(key not in self.by_key for key in keys)
        if missing:
            raise RuntimeError(
                f"distill: {missing} of {len(keys)} examples of a training batch have no teacher output "
                f"(their token ids differ from those of the tokenized training set)"
            )
        return torch.stack([self.by_key[key] for key in keys]).to(inputs["input_ids"].device)


def dataset_keys(train_set: Any) -> list[bytes]:
    """The key of every row of the student's tokenized training set (no padding: all tokens are real)."""
    types = list(train_set["token_type_ids"]) if "token_type_ids" in train_set.column_names else None
    ids = list(train_set["input_ids"])
    return [example_key(row, None if types is None else types[i]) for i, row in enumerate(ids)]


def distill_teacher(recipe: Recipe, data: Any, train_set: Any, tokenizer: Any) -> TeacherLogits | None:
    """The teacher's outputs for `distill:` (None when the recipe has no teacher), every check first."""
    spec = recipe.distill
    if not spec.enabled:
        return None
    started = time.perf_counter()
    task, max_length = recipe.model.task, recipe.data.max_length
    teacher_config(spec)  # a clear error when the teacher is missing
    source = teacher_source(spec)
    model, teacher_tokenizer = load_teacher(source, task)
    check_teacher_task(model.config, task, data.label_names, spec.teacher)
    check_max_length(max_length, model.config, teacher_tokenizer, f"the teacher {spec.teacher}")
    if spec.tokenizer == "same":
        check_same_tokenizer(
            teacher_tokenizer, tokenizer, data.train, max_length, (spec.teacher, recipe.model.name)
        )
    # `same`: the teacher reads the student's own rows (windows too, data.long_documents); `own`: the
    # texts, tokenized its way (the recipe refuses `own` with windows: they would be other windows)
    encoded = train_set if spec.tokenizer == "same" else tokenize(data.train, teacher_tokenizer, max_length)
    device = teacher_device(recipe.training.cpu)
    logits = compute_teacher_logits(model, teacher_tokenizer, encoded, recipe.evaluation.batch_size, device)
    seconds = round(time.perf_counter() - started, 2)
    summary = {
        "teacher": spec.teacher,
        "model_dir": source,
        "alpha": spec.alpha,
        "temperature": spec.temperature,
        "tokenizer": spec.tokenizer,
        "examples": len(logits),
        "teacher_seconds": seconds,
        # a calibrated teacher (docs/calibration.md) gives logits / T_cal: the temperature adds to it
        "teacher_calibration_temperature": (getattr(model.config, CALIBRATION_KEY, None) or {}).get(
            "temperature"
        ),
    }
    say(
        f"distill: teacher {spec.teacher} ({model.config.model_type}), outputs for {len(logits):,} training "
        f"examples computed once in {seconds:g} s; loss = {1 - spec.alpha:g} x task + {spec.alpha:g} x "
        f"distillation (T {spec.temperature:g})"
    )
    del model
    return TeacherLogits(dataset_keys(train_set), logits, summary)
