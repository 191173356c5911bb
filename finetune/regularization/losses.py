"""Regularization: dropout overrides, label smoothing, the task loss (with `loss:`'s class weights and
focal loss), and the penalty terms added to it.

Each technique is a small function that takes the `regularization:` section (and a model or the
logits) and knows nothing of the others or of the trainer. `loss_terms` returns the named terms of
the training loss (`task`, `l1`, `l2`, `l2_sp`, `rdrop`); the trainer sums and logs them. Techniques
that act outside the loss live in their own modules: `regularization/mixout.py`, `regularization/swa.py`, `regularization/augment.py`,
`regularization/clipping.py` (gradient clipping by value).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from finetune.errors import FinetuneError
from finetune.recipe.distill import DistillSection
from finetune.recipe.regularization import RegularizationSection

if TYPE_CHECKING:
    import torch

# Architectures name their dropout settings differently; an override sets every name present.
DROPOUT_CONFIG_KEYS: dict[str, tuple[str, ...]] = {
    "hidden_dropout": (
        "hidden_dropout_prob",
        "dropout",
        "hidden_dropout",
        "mlp_dropout",
        "embedding_dropout",
    ),
    "attention_dropout": ("attention_probs_dropout_prob", "attention_dropout"),
    "classifier_dropout": (
        "classifier_dropout",
        "classifier_dropout_prob",
        "seq_classif_dropout",
        "pooler_dropout",
        "cls_dropout",
    ),
}
# Settings a model reads with a fallback when its config lacks them, so `hasattr` cannot find them:
# DeBERTa's sequence heads use `cls_dropout` and, without it, hidden_dropout_prob (their
# `pooler_dropout` is the context pooler's, before the classifier's own dropout).
UNLISTED_DROPOUT_KEYS: dict[str, dict[str, tuple[str, ...]]] = {
    "deberta": {"classifier_dropout": ("cls_dropout",)},
    "deberta-v2": {"classifier_dropout": ("cls_dropout",)},
}


def dropout_overrides(config: Any, spec: RegularizationSection) -> dict[str, float]:
    """Config attributes to set for the recipe's dropout overrides (Srivastava et al., 2014)."""
    overrides: dict[str, float] = {}
    unlisted = UNLISTED_DROPOUT_KEYS.get(getattr(config, "model_type", ""), {})
    for key, names in DROPOUT_CONFIG_KEYS.items():
        value = getattr(spec, key)
        if value is None:
            continue
        present = [name for name in names if hasattr(config, name)]
        present += [name for name in unlisted.get(key, ()) if name not in present]
        if not present:
            raise FinetuneError(
                f"regularization.{key}: the '{config.model_type}' config has no dropout setting of "
                f"this kind (looked for {', '.join(names)}); remove the key"
            )
        overrides.update(dict.fromkeys(present, value))
    return overrides


def task_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    task: str,
    label_smoothing: float = 0.0,
    weights: torch.Tensor | None = None,
    focal_gamma: float = 0.0,
) -> torch.Tensor:
    """Cross-entropy (with label smoothing, Szegedy et al., 2016), mean squared error (regression),
    or binary cross-entropy per label (multi_label: smoothing moves targets toward 0.5).
    Token classification averages cross-entropy over labelled sub-words (label -100 is skipped).
    `weights` (one per class; per label for multi_label) and `focal_gamma` are `loss:`'s, see
    `weighted_cross_entropy` and `weighted_binary_cross_entropy`."""
    import torch.nn.functional as F

    plain = weights is None and focal_gamma == 0
    if task == "regression":
        return F.mse_loss(logits.squeeze(-1).float(), labels.float())
    if task == "multi_label":
        targets = labels.float() * (1 - label_smoothing) + label_smoothing / 2
        if plain:
            return F.binary_cross_entropy_with_logits(logits.float(), targets)
        return weighted_binary_cross_entropy(logits, targets, weights, focal_gamma)
    if task == "token_classification":
        logits, labels = logits.flatten(0, -2), labels.flatten()
    if plain:
        return F.cross_entropy(
            logits.float(), labels.long(), label_smoothing=label_smoothing, ignore_index=-100
        )
    return weighted_cross_entropy(logits, labels, label_smoothing, weights, focal_gamma)


def weighted_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    label_smoothing: float = 0.0,
    weights: torch.Tensor | None = None,
    focal_gamma: float = 0.0,
) -> torch.Tensor:
    """sum_i w[y_i] * (1 - p_i)^gamma * CE_i / N over the labelled examples (label -100 skipped).

    CE_i is the (label-smoothed) cross-entropy of example i, p_i the probability of its true class:
    focal loss (Lin et al., 2017) with the class weights as its alpha. A plain mean, unlike
    `F.cross_entropy(weight=...)`, which divides by the batch's sum of weights and so undoes the
    weighting in a batch of one class.
    """
    keep = labels != -100
    logits, labels = logits[keep].float(), labels[keep].long()
    log_p = logits.log_softmax(-1)
    nll = -log_p.gather(1, labels[:, None]).squeeze(1)
    per_example = (1 - label_smoothing) * nll - label_smoothing * log_p.mean(-1)
    if focal_gamma > 0:
        per_example = per_example * (1 - (-nll).exp()).pow(focal_gamma)
    if weights is not None:
        per_example = per_example * weights.to(per_example)[labels]
    return per_example.sum() / max(len(per_example), 1)


def weighted_binary_cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    positive_weights: torch.Tensor | None = None,
    focal_gamma: float = 0.0,
) -> torch.Tensor:
    """Mean over examples and labels of -(w_l t (1-p)^gamma log p + (1-t) p^gamma log(1-p)).

    p = sigmoid(logit); w_l weighs label l's positive term (BCE's `pos_weight`); gamma > 0 is the
    per-label focal loss. With gamma 0 this is `binary_cross_entropy_with_logits(pos_weight=w)`.
    """
    import torch.nn.functional as F

    logits = logits.float()
    log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)
    positive, negative = targets * log_p, (1 - targets) * log_not_p
    if focal_gamma > 0:
        positive = positive * (1 - log_p.exp()).pow(focal_gamma)
        negative = negative * log_p.exp().pow(focal_gamma)
    if positive_weights is not None:
        positive = positive * positive_weights.to(positive)
    return -(positive + negative).mean()


Anchors = list[tuple["torch.nn.Parameter", "torch.Tensor"]]


def pretrained_anchors(model: torch.nn.Module) -> Anchors:
    """(parameter, copy of its value now) for every pretrained parameter: the L2-SP reference w0.

    Taken before training, frozen parameters included (gradual unfreezing may release them later);
    the new task head (`model.new_parameters`, set when the model was loaded) gets no anchor.
    """
    new = set(getattr(model, "new_parameters", ()))
    return [(p, p.detach().clone()) for name, p in model.named_parameters() if name not in new]


def penalized_weights(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Trainable weight matrices (and embeddings): what L1/L2 penalise; biases and norms are not."""
    return [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]


def l1_penalty(model: torch.nn.Module) -> torch.Tensor:
    """sum |w| over `penalized_weights` (Tibshirani, 1996)."""
    return sum(p.abs().sum() for p in penalized_weights(model))


def l2_penalty(model: torch.nn.Module) -> torch.Tensor:
    """1/2 sum w^2 over `penalized_weights`."""
    return 0.5 * sum(p.pow(2).sum() for p in penalized_weights(model))


def l2_sp_penalty(anchors: Anchors) -> torch.Tensor:
    """1/2 sum (w - w0)^2 over trainable anchored parameters (L2-SP, Li et al., 2018)."""
    return 0.5 * sum((p - w0).pow(2).sum() for p, w0 in anchors if p.requires_grad)


def forward_inputs(spec: RegularizationSection, model: torch.nn.Module, inputs: dict[str, Any]) -> dict:
    """What the model's forward pass gets: the inputs without labels, twice over for R-Drop.

    R-Drop's two passes run as one pass over the batch stacked on itself: every row gets its own
    dropout mask, so the two halves are two independent dropout samples (as in the paper's code).
    """
    import torch

    model_inputs = {key: value for key, value in inputs.items() if key != "labels"}
    if spec.rdrop > 0 and model.training:
        model_inputs = {
            key: torch.cat([value, value]) if isinstance(value, torch.Tensor) else value
            for key, value in model_inputs.items()
        }
    return model_inputs


def rdrop_divergence(
    first: torch.Tensor, second: torch.Tensor, task: str, labels: torch.Tensor
) -> torch.Tensor:
    """Half the symmetric KL divergence between two predictions, summed over the batch's examples
    (or labelled tokens), as the R-Drop authors' code does (`compute_kl_loss` sums while the task
    loss is a mean), so `regularization.rdrop` is the paper's alpha.

    Categorical: 1/2 sum_c (p_c - q_c)(log p_c - log q_c); multi-label (one Bernoulli per label):
    1/2 sum_l (sigmoid a - sigmoid b)(a - b); regression: the squared difference of the outputs.
    """
    first, second = first.float(), second.float()
    if task == "regression":
        return (first - second).pow(2).sum()
    if task == "multi_label":
        return 0.5 * ((first.sigmoid() - second.sigmoid()) * (first - second)).sum()
    if task == "token_classification":  # only the labelled sub-words
        keep = labels != -100
        first, second = first[keep], second[keep]
        if first.numel() == 0:
            return first.sum()
    log_p, log_q = first.log_softmax(-1), second.log_softmax(-1)
    return 0.5 * ((log_p.exp() - log_q.exp()) * (log_p - log_q)).sum()


def distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, task: str, temperature: float
) -> torch.Tensor:
    """How far the student's outputs are from the teacher's, per example, averaged over the batch.

    Classification: KL(softmax(t/T) || softmax(s/T)) * T^2 (Hinton et al., 2015; T^2 keeps the
    gradients' size as T changes). multi_label: the Bernoulli KL per label between sigmoid(t/T) and
    sigmoid(s/T), averaged over labels like the task's BCE, times T^2. Regression: the squared
    difference of the outputs (no temperature). Each is exactly 0 when the student equals the teacher.
    """
    import torch.nn.functional as F

    student, teacher = student.float(), teacher.to(student.device).float()
    if task == "regression":
        return F.mse_loss(student.squeeze(-1), teacher.squeeze(-1))
    s, t = student / temperature, teacher / temperature
    if task == "multi_label":
        positive = t.sigmoid() * (F.logsigmoid(t) - F.logsigmoid(s))
        negative = (-t).sigmoid() * (F.logsigmoid(-t) - F.logsigmoid(-s))
        return (positive + negative).mean() * temperature**2
    kl = F.kl_div(s.log_softmax(-1), t.log_softmax(-1), log_target=True, reduction="batchmean")
    return kl * temperature**2


def blend_distillation(
    terms: dict[str, torch.Tensor],
    logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    task: str,
    spec: DistillSection,
) -> dict[str, torch.Tensor]:
    """`terms` with the task term weighted 1 - alpha and `distill`, alpha times the distillation
    loss, added. Logits of a batch stacked for R-Drop hold two passes: each is compared with the teacher."""
    passes = logits.chunk(2) if logits.shape[0] == 2 * teacher_logits.shape[0] else (logits,)
    divergence = sum(distillation_loss(p, teacher_logits, task, spec.temperature) for p in passes)
    return {
        **terms,
        "task": (1 - spec.alpha) * terms["task"],
        "distill": spec.alpha * divergence / len(passes),
    }


def loss_terms(
    spec: RegularizationSection,
    task: str,
    model: torch.nn.Module,
    inputs: dict[str, Any],
    outputs: Any,
    anchors: Anchors | None = None,
    weights: torch.Tensor | None = None,
    focal_gamma: float = 0.0,
    teacher_logits: torch.Tensor | None = None,
    distill: DistillSection | None = None,
) -> dict[str, torch.Tensor]:
    """The named terms of the training loss (their sum backpropagates; each is logged).

    `task` is the data loss; each active regularizer adds a term of its own, in training only (the
    validation loss is the task loss: unsmoothed, and without `loss:`'s class `weights` and
    `focal_gamma`). `outputs` of a batch stacked for R-Drop (see `forward_inputs`) hold both
    passes; `anchors` are the L2-SP reference weights; `teacher_logits` (one row per example of the
    batch) add `distill:`'s term (see `blend_distillation`).
    """
    training = model.training
    smoothing = spec.label_smoothing if training else 0.0
    shaping = {"weights": weights, "focal_gamma": focal_gamma} if training else {}
    labels, logits = inputs["labels"], outputs.logits
    if logits.shape[0] == 2 * labels.shape[0]:  # R-Drop: two dropout passes of the same batch
        first, second = logits.chunk(2)
        task_term = (
            task_loss(first, labels, task, smoothing, **shaping)
            + task_loss(second, labels, task, smoothing, **shaping)
        ) / 2
        terms = {"task": task_term, "rdrop": spec.rdrop * rdrop_divergence(first, second, task, labels)}
    else:
        terms = {"task": task_loss(logits, labels, task, smoothing, **shaping)}
    if not training:
        return terms
    if teacher_logits is not None and distill is not None:
        terms = blend_distillation(terms, logits, teacher_logits, task, distill)
    if spec.l1 > 0:
        terms["l1"] = spec.l1 * l1_penalty(model)
    if spec.l2 > 0:
        terms["l2"] = spec.l2 * l2_penalty(model)
    if spec.l2_sp > 0:
        if anchors is None:
            raise ValueError("regularization.l2_sp needs the pretrained anchors (pretrained_anchors(model))")
        terms["l2_sp"] = spec.l2_sp * l2_sp_penalty(anchors)
    return terms
