"""`finetune predict`: a trained model on a file of texts -> one JSON line of predictions per text.

The source is a run folder (its `model/`, and its `recipe.yaml` for the task, the columns and
the file options) or a plain Hugging Face model folder (the task is read from its config; the
columns come from options). Texts are tokenized once, sorted by length so that each batch pads
little, run in batches under `torch.inference_mode`, and written back in input order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from finetune.data.columns import canonical_columns
from finetune.data.files import read_file
from finetune.errors import FinetuneError
from finetune.recipe.data import DataSection
from finetune.runs.folders import MODEL_DIR, RECIPE_FILE
from finetune.runs.outputs import check_output_file

if TYPE_CHECKING:
    from datasets import Dataset

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class Predictor:
    """A loaded model with what is needed to read inputs for it and to name its outputs."""

    model: Any
    tokenizer: Any
    task: str
    label_names: list[str] | None
    threshold: float
    data: DataSection  # columns and file options for input files
    max_length: int
    device: Any
    source: Path

    @property
    def words(self) -> bool:
        return self.task == "token_classification"


def task_of_config(config: Any) -> str:
    """The finetune task a saved model was trained for, from its config."""
    if any("TokenClassification" in name for name in config.architectures or []):
        return "token_classification"
    if config.problem_type == "multi_label_classification":
        return "multi_label"
    if config.problem_type == "regression" or config.num_labels == 1:
        return "regression"
    return "classification"


def locate_model(source: Path) -> tuple[Path, Path | None]:
    """(model folder, recipe file or None) for a run folder or a model folder."""
    source = Path(source)
    if (source / RECIPE_FILE).is_file():
        model_dir = source / MODEL_DIR
        if not model_dir.is_dir():
            raise FinetuneError(
                f"{source}: this run saved no model (output.save_model: false); nothing to predict with"
            )
        return model_dir, source / RECIPE_FILE
    if (source / "config.json").is_file() or (source / "adapter_config.json").is_file():
        return source, None
    raise FinetuneError(
        f"{source}: neither a run folder (with {RECIPE_FILE} and {MODEL_DIR}/) nor a model folder (with config.json)"
    )


def load_saved_model(model_dir: Path, task: str | None = None) -> Any:
    """A saved model: full weights, or an adapter on its base model (`peft.save: adapter`)."""
    from transformers import AutoConfig

    from finetune.model.loading import model_class
    from finetune.model.peft import is_adapter_folder, load_adapted_model

    if is_adapter_folder(model_dir):
        return load_adapted_model(model_dir)
    task = task or task_of_config(AutoConfig.from_pretrained(model_dir))
    return model_class(task).from_pretrained(model_dir)


def _input_section(recipe_data: DataSection | None, columns: dict[str, Any]) -> DataSection:
    """How to read input files: the run's data options (columns, header, separator), then the options given."""
    base = recipe_data.model_dump() if recipe_data is not None else {}
    base.update(train=None, validation=None, hub=None, dir=None)
    if base.get("format") not in (None, "conll"):
        base["format"] = "auto"
    given = {key: value for key, value in columns.items() if value is not None}
    if {"text", "text_pair", "label"} & set(given):
        base.pop("header", None)  # unless given: none with column positions, else a header row
    return DataSection(**{**base, **given})


def load_predictor(
    source: Path,
    columns: dict[str, Any] | None = None,
    threshold: float | None = None,
    max_length: int | None = None,
    device: str | None = None,
) -> Predictor:
    """Load the model of a run folder or model folder, with its task, labels and input options.

    `columns` may set `text`, `text_pair`, `label`, `label_separator`, `format`, `header`.
    """
    import torch
    from transformers import AutoTokenizer

    from finetune.model.loading import THRESHOLD_KEY
    from finetune.recipe import load_recipe

    model_dir, recipe_file = locate_model(Path(source))
    recipe = load_recipe(recipe_file) if recipe_file is not None else None
    model = load_saved_model(model_dir, recipe.model.task if recipe else None)
    task = recipe.model.task if recipe else task_of_config(model.config)
    names = (
        None if task == "regression" else [model.config.id2label[i] for i in range(model.config.num_labels)]
    )
    if threshold is None:
        threshold = recipe.model.decision_threshold if recipe else getattr(model.config, THRESHOLD_KEY, 0.5)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if max_length is None:
        max_length = recipe.data.max_length if recipe else min(tokenizer.model_max_length, 512)
    chosen = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(chosen).eval()
    return Predictor(
        model=model,
        tokenizer=tokenizer,
        task=task,
        label_names=names,
        threshold=float(threshold),
        data=_input_section(recipe.data if recipe else None, columns or {}),
        max_length=max_length,
        device=chosen,
        source=Path(source),
    )


def read_inputs(predictor: Predictor, path: Path, labelled: bool = False) -> Dataset:
    """An input file as canonical columns (`text`[, `text_pair`][, `labels`], or `tokens`[, `labels`])."""
    path = Path(path)
    if not path.is_file():
        raise FinetuneError(f"input file not found: {path}")
    if predictor.words:
        from finetune.data.tokens import read_conll, token_file_format, word_columns

        if token_file_format(predictor.data, path) == "conll":
            return read_conll(path, "input", tagged=labelled, encoding=predictor.data.encoding)
        return word_columns(read_file(predictor.data, path, "input"), predictor.data, str(path), labelled)
    return canonical_columns(read_file(predictor.data, path, "input"), predictor.data, str(path), labelled)


def encode(predictor: Predictor, dataset: Dataset) -> Dataset:
    """Tokenize without padding; for words also record where each word's first sub-word is."""
    tokenizer, max_length = predictor.tokenizer, predictor.max_length
    if not predictor.words:  # truncated, or windows with a `document` column (the run's data.long_documents)
        from finetune.data.windows import encode_texts, window_stride

        texts = dataset.remove_columns([c for c in dataset.column_names if c.startswith("label")])
        return encode_texts(texts, tokenizer, max_length, window_stride(predictor.data, max_length), "input")

    from finetune.data.tokens import require_fast_tokenizer

    require_fast_tokenizer(tokenizer, f"{predictor.source} (its tokenizer)")

    def encode_words(batch: dict[str, list]) -> dict[str, list]:
        encoded = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True, max_length=max_length)
        starts = []
        for i, words in enumerate(batch["tokens"]):
            first = [-1] * len(words)  # -1: the word was cut off by max_length
            for position, word in enumerate(encoded.word_ids(i)):
                if word is not None and first[word] == -1:
                    first[word] = position
            starts.append(first)
        return {**encoded, "word_starts": starts, "length": [len(ids) for ids in encoded["input_ids"]]}

    return dataset.map(encode_words, batched=True, desc="Tokenizing words")


def length_sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Example indices grouped into batches of similar length, longest first (little padding)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def infer(
    predictor: Predictor, encoded: Dataset, batch_size: int = 64, progress: bool = True
) -> list[np.ndarray]:
    """Logits per example, in input order: (num_labels,) per text, (length, num_labels) per word list."""
    import torch
    from tqdm.auto import tqdm

    inputs = [c for c in MODEL_INPUTS if c in encoded.column_names]
    columns = {c: encoded[c] for c in inputs}
    lengths = encoded["length"]
    outputs: list[np.ndarray | None] = [None] * len(lengths)
    bar = tqdm(total=len(lengths), unit="text", desc="Predicting", disable=not progress)
    with torch.inference_mode():
        for batch in length_sorted_batches(lengths, batch_size):
            features = [{c: columns[c][i] for c in inputs} for i in batch]
            # Padding on the right whatever the tokenizer prefers: a word list's logits are then its
            # first `length` rows, and [CLS] stays at position 0 where the classification head reads it.
            padded = predictor.tokenizer.pad(features, padding_side="right", return_tensors="pt")
            logits = predictor.model(**{k: v.to(predictor.device) for k, v in padded.items()}).logits
            logits = logits.float().cpu().numpy()
            for row, index in enumerate(batch):
                outputs[index] = logits[row, : lengths[index]] if predictor.words else logits[row]
            bar.update(len(batch))
    bar.close()
    return outputs  # type: ignore[return-value]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def word_tags(predictor: Predictor, logits: np.ndarray, starts: list[int]) -> list[str | None]:
    """The predicted tag of each word (its first sub-word's); None where max_length cut the word off."""
    assert predictor.label_names is not None
    return [predictor.label_names[int(logits[s].argmax())] if s >= 0 else None for s in starts]


def prediction_record(predictor: Predictor, example: dict[str, Any], logits: np.ndarray, starts: Any) -> dict:
    """One output line: the input text(s) and what the model says about them."""
    names = predictor.label_names
    if predictor.words:
        from seqeval.metrics.sequence_labeling import get_entities

        tags = word_tags(predictor, logits, starts)
        entities = [
            {
                "type": kind,
                "start": start,
                "end": end + 1,
                "text": " ".join(example["tokens"][start : end + 1]),
            }
            for kind, start, end in get_entities([tag or "O" for tag in tags])
        ]
        return {"tokens": example["tokens"], "tags": tags, "entities": entities}
    record = {key: example[key] for key in ("text", "text_pair") if key in example}
    if predictor.task == "regression":
        return {**record, "score": float(logits.reshape(-1)[0])}
    assert names is not None
    if predictor.task == "multi_label":
        probabilities = 1.0 / (1.0 + np.exp(-logits))
        chosen = [name for name, p in zip(names, probabilities) if p > predictor.threshold]
        return {**record, "labels": chosen, "probabilities": _named(names, probabilities)}
    probabilities = softmax(logits)
    best = int(probabilities.argmax())
    return {
        **record,
        "label": names[best],
        "score": round(float(probabilities[best]), 6),
        "probabilities": _named(names, probabilities),
    }


def _named(names: list[str], values: np.ndarray) -> dict[str, float]:
    return {name: round(float(value), 6) for name, value in zip(names, values)}


def predict_dataset(
    predictor: Predictor, dataset: Dataset, batch_size: int = 64, progress: bool = True
) -> tuple[list[dict], list[np.ndarray], Dataset]:
    """Records, raw logits and the encoded dataset for every example of `dataset`, in its order."""
    encoded = encode(predictor, dataset)
    logits = infer(predictor, encoded, batch_size, progress)
    if "document" in encoded.column_names:  # windows: one row of logits per document, aggregated
        from finetune.data.windows import aggregate

        assert predictor.data.long_documents is not None
        logits = list(
            aggregate(np.stack(logits), list(encoded["document"]), predictor.data.long_documents.aggregate)
        )
    starts = encoded["word_starts"] if predictor.words else [None] * len(logits)
    examples = dataset.remove_columns([c for c in dataset.column_names if c == "labels"]).to_list()
    records = [prediction_record(predictor, examples[i], logits[i], starts[i]) for i in range(len(logits))]
    return records, logits, encoded


def long_texts(predictor: Predictor, dataset: Dataset, encoded: Dataset) -> Any:
    """The input texts longer than max_length, and the windows they became (data/windows.py's `LongTexts`)."""
    from finetune.data.windows import DOCUMENT, measure

    report = measure(dataset, predictor.tokenizer, predictor.max_length, "input")
    report.windows = len(encoded) if DOCUMENT in encoded.column_names else None
    return report


def write_jsonl(records: list[dict], path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def predict_file(
    source: Path,
    input_path: Path,
    output_path: Path,
    batch_size: int = 64,
    columns: dict[str, Any] | None = None,
    threshold: float | None = None,
    max_length: int | None = None,
    device: str | None = None,
    overwrite: bool = False,
) -> list[dict]:
    """`finetune predict`: read `input_path`, predict, write one JSON line per input to `output_path`.

    Never over `input_path`; over an existing `output_path` only with `overwrite`.
    """
    check_output_file(Path(output_path), [Path(input_path)], overwrite)
    predictor = load_predictor(source, columns, threshold, max_length, device)
    dataset = read_inputs(predictor, input_path)
    records, _, encoded = predict_dataset(predictor, dataset, batch_size)
    write_jsonl(records, output_path)
    report = None if predictor.words else long_texts(predictor, dataset, encoded)
    if report is not None and report.over:  # never truncated silently
        print(f"note: {report.line()}")
    truncated = sum(tag is None for r in records for tag in r.get("tags", []))
    if truncated:
        print(
            f"note: {truncated} words lay beyond max_length {predictor.max_length} tokens and got no tag (null)"
        )
    return records
