"""`finetune evaluate`: a trained model's metrics on any labelled file, with figures.

The file is read and its labels checked exactly as training data are (same columns, same
errors), predicted with `finetune.inference.predict`'s batched, length-sorted inference, and scored with
the same metric functions that scored validation during training. Written to the output folder:

    evaluation.json        the metrics, the file, the model, the number of examples
    predictions.jsonl      what the model said about each example, in file order
    confusion_matrix.png   classification and token classification (per tag)
    per_label.png          multi_label: precision, recall and F1 of each label
    scatter.png            regression: prediction against target
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from finetune.data.columns import LABEL, column_values
from finetune.data.labels import encode_labels, encode_multi_hot, float_targets, label_sets
from finetune.errors import FinetuneError
from finetune.inference.predict import (
    Predictor,
    load_predictor,
    long_texts,
    predict_dataset,
    read_inputs,
    write_jsonl,
)
from finetune.runs.folders import RECIPE_FILE
from finetune.runs.outputs import same_path
from finetune.runs.plots import _pyplot
from finetune.training.metrics import entity_metrics, task_metrics

if TYPE_CHECKING:
    from datasets import Dataset

RESULT_FILES = ("evaluation.json", "predictions.jsonl")  # the figures are PNGs, never a data file


def encode_gold(predictor: Predictor, dataset: Dataset, source: str) -> Dataset:
    """Gold labels in the model's encoding; a label the model does not know is an error naming it."""
    names = predictor.label_names
    if predictor.task == "regression":
        return float_targets(dataset, "input", source)
    assert names is not None
    if predictor.task == "multi_label":
        sets = label_sets(dataset, predictor.data.label_separator, "input", source)
        return encode_multi_hot(sets, names, "input", source)
    if predictor.words:
        from finetune.data.tokens import check_sentences, encode_tags

        check_sentences(dataset, "input", source)
        return encode_tags(dataset, names, "input", source)
    return encode_labels(dataset, names, "input", source)


def score(
    predictor: Predictor, dataset: Dataset, logits: list[np.ndarray], encoded: Dataset
) -> dict[str, float]:
    """The task's metrics; token classification is scored per word over whole sentences."""
    if predictor.words:
        gold, predicted = word_level_tags(predictor, dataset, logits, encoded)
        return entity_metrics(gold, predicted)
    labels = np.asarray(column_values(dataset, LABEL))
    return task_metrics(
        predictor.task,
        np.stack(logits),
        labels,
        len(predictor.label_names or [None]),
        predictor.threshold,
        predictor.label_names,
    )


def word_level_tags(
    predictor: Predictor, dataset: Dataset, logits: list[np.ndarray], encoded: Dataset
) -> tuple[list[list[str]], list[list[str]]]:
    """Gold and predicted tag names per sentence; words cut off by max_length count as `O` predictions."""
    from finetune.inference.predict import word_tags

    names = predictor.label_names or []
    gold = [[names[t] for t in tags] for tags in column_values(dataset, LABEL)]
    predicted = [
        [tag or "O" for tag in word_tags(predictor, row, starts)]
        for row, starts in zip(logits, encoded["word_starts"])
    ]
    return gold, predicted


def plot_confusion(gold: list[str], predicted: list[str], names: list[str], path: Path, title: str) -> Path:
    """Counts of (true, predicted) label pairs, rows coloured by their share of the true label."""
    from sklearn.metrics import confusion_matrix

    counts = confusion_matrix(gold, predicted, labels=names)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    plt = _pyplot()
    size = max(4.0, 0.55 * len(names) + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    for i in range(len(names)):
        for j in range(len(names)):
            color = "white" if shares[i, j] > 0.6 else "black"
            ax.text(j, i, f"{counts[i, j]}", ha="center", va="center", color=color, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true label")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_per_label(gold: np.ndarray, predicted: np.ndarray, names: list[str], path: Path) -> Path:
    """Multi-label: precision, recall and F1 of each label, side by side."""
    from sklearn.metrics import precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(gold, predicted, zero_division=0)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * len(names) + 2), 4))
    x = np.arange(len(names))
    for offset, values, label in ((-0.27, precision, "precision"), (0, recall, "recall"), (0.27, f1, "F1")):
        ax.bar(x + offset, values, width=0.27, label=label)
    ax.set_xticks(x, [f"{n}\n(n={s})" for n, s in zip(names, support)], rotation=0)
    ax.set(ylim=(0, 1.05), ylabel="score", title="Per-label scores")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_scatter(targets: np.ndarray, predictions: np.ndarray, path: Path) -> Path:
    """Regression: each prediction against its target, with the diagonal."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(targets, predictions, s=10, alpha=0.5)
    low, high = float(min(targets.min(), predictions.min())), float(max(targets.max(), predictions.max()))
    ax.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1)
    ax.set(xlabel="target", ylabel="prediction", title="Predictions against targets")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def figures(
    predictor: Predictor, dataset: Dataset, logits: list[np.ndarray], encoded: Dataset, folder: Path
) -> list[Path]:
    """The task's evaluation figure(s)."""
    names = predictor.label_names or []
    if predictor.task == "regression":
        return [
            plot_scatter(
                np.asarray(column_values(dataset, LABEL)),
                np.stack(logits).reshape(-1),
                folder / "scatter.png",
            )
        ]
    if predictor.task == "multi_label":
        chosen = (1 / (1 + np.exp(-np.stack(logits))) > predictor.threshold).astype(int)
        return [
            plot_per_label(
                np.asarray(column_values(dataset, LABEL)).astype(int), chosen, names, folder / "per_label.png"
            )
        ]
    if predictor.words:
        gold, predicted = word_level_tags(predictor, dataset, logits, encoded)
        flat_gold = [t for row in gold for t in row]
        flat_predicted = [t for row in predicted for t in row]
        return [
            plot_confusion(
                flat_gold,
                flat_predicted,
                names,
                folder / "confusion_matrix.png",
                f"Tags ({len(flat_gold)} words)",
            )
        ]
    gold_names = [names[i] for i in column_values(dataset, LABEL)]
    predicted_names = [names[int(row.argmax())] for row in logits]
    return [
        plot_confusion(
            gold_names,
            predicted_names,
            names,
            folder / "confusion_matrix.png",
            f"Confusion matrix ({len(gold_names)} examples)",
        )
    ]


def default_output_dir(source: Path, data_path: Path) -> Path:
    """`<run>/evaluations/<file stem>` for run folders; `evaluation-<file stem>` here for model folders."""
    if (source / RECIPE_FILE).is_file():
        return source / "evaluations" / data_path.stem
    return Path.cwd() / f"evaluation-{data_path.stem}"


def check_output_dir(folder: Path, data_path: Path, overwrite: bool) -> None:
    """Refuse a folder where the results would replace the data file, or earlier results unless `overwrite`."""
    for name in RESULT_FILES:
        if same_path(folder / name, data_path):
            raise FinetuneError(
                f"--output-dir {folder}: evaluate writes {name} there, which is the data file {data_path}; "
                "choose another --output-dir (--overwrite never replaces the data)."
            )
    found = [name for name in RESULT_FILES if (folder / name).exists()]
    if found and not overwrite:
        raise FinetuneError(
            f"{folder} already holds the results of an evaluation ({', '.join(found)}); pass --overwrite "
            "to replace them, or choose another folder with --output-dir."
        )


def evaluate_file(
    source: Path,
    data_path: Path,
    output_dir: Path | None = None,
    batch_size: int = 64,
    columns: dict[str, Any] | None = None,
    threshold: float | None = None,
    max_length: int | None = None,
    device: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """`finetune evaluate`: metrics of a model on a labelled file, plus predictions and figures.

    Never over `data_path`; into a folder with an earlier evaluation only with `overwrite`.
    """
    source, data_path = Path(source), Path(data_path)
    folder = Path(output_dir) if output_dir is not None else default_output_dir(source, data_path)
    check_output_dir(folder, data_path, overwrite)
    predictor = load_predictor(source, columns, threshold, max_length, device)
    raw = read_inputs(predictor, data_path, labelled=True)
    dataset = encode_gold(predictor, raw, str(data_path))
    records, logits, encoded = predict_dataset(predictor, dataset)
    metrics = score(predictor, dataset, logits, encoded)
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(records, folder / "predictions.jsonl")
    written = figures(predictor, dataset, logits, encoded, folder)
    summary = {
        "model": str(source),
        "data": str(data_path),
        "examples": len(dataset),
        "task": predictor.task,
        "threshold": predictor.threshold if predictor.task == "multi_label" else None,
        "metrics": metrics,
        "figures": [p.name for p in written],
    }
    if not predictor.words:  # texts longer than max_length: truncated, or windows of the run's long_documents
        report = long_texts(predictor, raw, encoded)
        summary["long_texts"] = report.summary()
        if report.over:
            print(f"note: {report.line()}")
    (folder / "evaluation.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    summary["output_dir"] = str(folder)
    return summary
