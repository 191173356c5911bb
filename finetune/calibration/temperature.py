"""Temperature scaling (Guo et al., 2017) and the measures that judge it: NLL, ECE, reliability bins.

A classifier's confidence is the softmax probability of its answer. It is calibrated when, among
the answers given with confidence about p, a fraction p is right. Fine-tuned encoders tend to be
over-confident; dividing the logits by one scalar T > 1 softens every softmax without changing any
argmax, so accuracy metrics stay exactly as they were. T is the minimiser of the negative
log-likelihood on held-out data, found by L-BFGS on log T (which keeps T positive).
"""

from __future__ import annotations

import numpy as np

from finetune.errors import FinetuneError


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by each row's maximum so large logits do not overflow."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean -log p(label) under softmax(logits / T): the loss temperature scaling minimises."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    shifted = scaled - scaled.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def reliability_bins(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> list[dict]:
    """Per equal-width confidence bin ((0, 1/bins], ...): examples, mean confidence, accuracy.

    Empty bins are kept (count 0) so that two diagrams of the same data line up bin by bin.
    """
    confidence = probabilities.max(axis=-1)
    correct = probabilities.argmax(axis=-1) == labels
    # bin i holds confidences in (i/bins, (i+1)/bins]; a confidence of exactly 0 cannot occur
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    rows = []
    for i in range(bins):
        members = index == i
        count = int(members.sum())
        rows.append(
            {
                "lower": i / bins,
                "upper": (i + 1) / bins,
                "count": count,
                "confidence": float(confidence[members].mean()) if count else None,
                "accuracy": float(correct[members].mean()) if count else None,
            }
        )
    return rows


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE: the bins' |accuracy - mean confidence|, weighted by the share of examples in each bin."""
    total = len(labels)
    rows = reliability_bins(probabilities, labels, bins)
    return float(sum(r["count"] / total * abs(r["accuracy"] - r["confidence"]) for r in rows if r["count"]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, max_iter: int = 100) -> float:
    """The T > 0 that minimises the NLL of softmax(logits / T) on these examples (L-BFGS on log T)."""
    import torch

    if len(labels) == 0:
        raise FinetuneError("calibration: the validation split is empty; there is nothing to fit T on")
    x = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x / log_t.exp(), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    # a safety bound: when every example is right the NLL has no minimum (it falls as T -> 0);
    # calibration/calibrate.py does not fit then
    return float(np.clip(log_t.exp().item(), 1e-2, 1e2))


def calibration_summary(logits: np.ndarray, labels: np.ndarray, temperature: float, bins: int) -> dict:
    """NLL, ECE and reliability bins before (T = 1) and after (T), for results.json and the report."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels).astype(int)
    summary: dict = {"temperature": temperature, "bins": bins, "examples": int(len(labels))}
    for when, t in (("before", 1.0), ("after", temperature)):
        probabilities = softmax(logits / t)
        summary[f"ece_{when}"] = expected_calibration_error(probabilities, labels, bins)
        summary[f"nll_{when}"] = negative_log_likelihood(logits, labels, t)
        summary[f"reliability_{when}"] = reliability_bins(probabilities, labels, bins)
    return summary
