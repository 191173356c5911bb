"""Does an exported model say what the PyTorch model says? Logits compared text by text.

`finetune export` runs the same texts, in the same length-sorted batches and with the same right
padding, through PyTorch and through onnxruntime, and compares the logits of every text (every
real token for token classification; padding is never compared). Two figures per exported file:

    max_abs_diff   the largest |onnx - torch| over every logit: what an fp32 export is held to
    agreement      the share of predictions that are the same: the argmax class (classification),
                   the set of labels above the threshold (multi-label), the tag of each word
                   (token classification), a score within a tenth of the spread of the PyTorch
                   scores (regression); what an int8 export, whose logits move by design, is held to

Why these limits (docs/using-a-trained-model.md#export-to-onnx): an fp32 graph computes the same
sums in another order, which moves logits by about 1e-6 to 1e-5; `DEFAULT_TOLERANCE` (1e-3) leaves
two orders of magnitude for that and still catches a wrongly traced graph (a mask baked in, a
position offset: differences of 1e-2 and more). A prediction can only change under it where the
two best logits were within twice the tolerance: a tie. int8 weights move logits far more (up to 1.1
on a fine-tuned MiniLM, benchmarks/export.md), so int8 is held to `DEFAULT_MIN_AGREEMENT` (99%) of the fp32 model's predictions instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from finetune.inference.predict import length_sorted_batches

if TYPE_CHECKING:
    from datasets import Dataset

    from finetune.inference.predict import Predictor

DEFAULT_TOLERANCE = 1e-3
DEFAULT_MIN_AGREEMENT = 0.99
REGRESSION_SPREAD_SHARE = 0.1  # a regression score "agrees" within this share of the scores' std


@dataclass
class Parity:
    """How one exported file compares with the PyTorch model on the same texts."""

    file: str
    texts: int
    max_abs_diff: float
    mean_abs_diff: float
    agreement: float
    agreeing: int
    compared: int  # predictions compared: texts, or words for token classification
    gate: str  # "max_abs_diff" or "agreement": what this file is held to
    limit: float
    passed: bool

    def line(self) -> str:
        """One line for the console: both figures, the limit, and the verdict."""
        held = (
            f"tolerance {self.limit:g}"
            if self.gate == "max_abs_diff"
            else f"at least {self.limit:.2%} required"
        )
        verdict = "ok" if self.passed else "FAILED"
        return (
            f"{self.file}: max |logit difference| {self.max_abs_diff:.2e}, mean {self.mean_abs_diff:.2e}; "
            f"agreement {self.agreement:.2%} ({self.agreeing:,}/{self.compared:,}); {held}: {verdict}"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def onnx_infer(session: Any, predictor: Predictor, encoded: Dataset, batch_size: int) -> list[np.ndarray]:
    """Logits per example from an onnxruntime session, batched and padded exactly as `infer` does."""
    names = [i.name for i in session.get_inputs()]
    columns = {name: encoded[name] for name in names}
    lengths = encoded["length"]
    outputs: list[np.ndarray | None] = [None] * len(lengths)
    for batch in length_sorted_batches(lengths, batch_size):
        features = [{name: columns[name][i] for name in names} for i in batch]
        padded = predictor.tokenizer.pad(features, padding_side="right", return_tensors="np")
        (logits,) = session.run(["logits"], {name: padded[name].astype(np.int64) for name in names})
        for row, index in enumerate(batch):
            outputs[index] = logits[row, : lengths[index]] if predictor.words else logits[row]
    return outputs  # type: ignore[return-value]


def decisions(task: str, logits: np.ndarray, threshold: float) -> np.ndarray:
    """What the model predicts from a stack of logits: one row per compared prediction."""
    if task == "multi_label":
        return 1.0 / (1.0 + np.exp(-logits)) > threshold
    return logits.argmax(axis=-1)


def agreeing(task: str, reference: np.ndarray, exported: np.ndarray, threshold: float, tolerance: float):
    """Per compared prediction, whether the exported model predicts what the reference does."""
    if task == "regression":
        scores = reference.reshape(-1)
        within = max(REGRESSION_SPREAD_SHARE * float(scores.std()), tolerance)
        return np.abs(exported.reshape(-1) - scores) <= within
    same = decisions(task, reference, threshold) == decisions(task, exported, threshold)
    return same.all(axis=-1) if same.ndim > 1 else same


def compared_rows(
    predictor: Predictor, logits: list[np.ndarray], encoded: Dataset
) -> tuple[np.ndarray, np.ndarray]:
    """(every real logit row for the differences, the rows whose predictions are compared).

    Texts: one row each, both times. Token classification: every token for the differences, each
    word's first sub-word (what `predict` tags the word with) for the agreement.
    """
    if not predictor.words:
        stacked = np.stack(logits)
        return stacked, stacked
    starts = encoded["word_starts"]
    words = [row[s] for row, first in zip(logits, starts) for s in first if s >= 0]
    return np.concatenate(logits), np.stack(words)


def compare(
    predictor: Predictor,
    encoded: Dataset,
    reference: list[np.ndarray],
    exported: list[np.ndarray],
    file: str,
    limit: float,
    gate: str,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Parity:
    """The differences and the agreement of `exported` against `reference`, held to `limit` by `gate`."""
    all_ref, words_ref = compared_rows(predictor, reference, encoded)
    all_out, words_out = compared_rows(predictor, exported, encoded)
    difference = np.abs(all_out.astype(np.float64) - all_ref.astype(np.float64))
    same = agreeing(predictor.task, words_ref, words_out, predictor.threshold, tolerance)
    max_diff, agreement = float(difference.max()), float(same.mean())
    passed = max_diff <= limit if gate == "max_abs_diff" else agreement >= limit
    return Parity(
        file=file,
        texts=len(reference),
        max_abs_diff=max_diff,
        mean_abs_diff=float(difference.mean()),
        agreement=agreement,
        agreeing=int(same.sum()),
        compared=int(same.size),
        gate=gate,
        limit=float(limit),
        passed=bool(passed and np.isfinite(max_diff)),
    )
