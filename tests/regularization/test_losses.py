"""Regularizers: each changes what it should, by its formula, and each loss term is logged."""

import functools
import json
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_bert

from finetune.errors import RecipeError
from finetune.recipe import load_recipe, validate_recipe
from finetune.recipe.regularization import RegularizationSection
from finetune.regularization.clipping import ClipGradValue
from finetune.regularization.losses import (
    forward_inputs,
    l1_penalty,
    l2_penalty,
    l2_sp_penalty,
    loss_terms,
    pretrained_anchors,
    rdrop_divergence,
)
from finetune.regularization.mixout import MixoutLinear, apply_mixout, mixout
from finetune.regularization.swa import StochasticWeightAveraging

HEAD = ["classifier.weight", "classifier.bias"]


def pretrained_model(**config):
    model = tiny_bert(**config)
    model.new_parameters = HEAD  # what load_model records for a fresh head
    return model


def batch(size=4, length=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {
        "input_ids": torch.randint(0, 1000, (size, length), generator=generator),
        "attention_mask": torch.ones(size, length, dtype=torch.long),
        "labels": torch.tensor([0, 1] * (size // 2)),
    }


def terms_of(spec, model, inputs, task="classification", anchors=None):
    outputs = model(**forward_inputs(spec, model, inputs))
    return loss_terms(spec, task, model, inputs, outputs, anchors)


# --- L1, L2, L2-SP ---


def constant_model():
    """A one-layer tiny BERT with frozen embeddings and every parameter set to -0.5.

    Its trainable weight matrices: query, key, value and attention output 32x32 (4 x 1024),
    intermediate 37x32 and output 32x37 (2 x 1184), pooler 32x32 (1024), classifier 2x32 (64):
    7552 numbers, so L1 = 7552 x 0.5 = 3776 and L2 = 1/2 x 7552 x 0.25 = 944."""
    model = pretrained_model(vocab_size=1000, num_hidden_layers=1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(-0.5)
    model.bert.embeddings.requires_grad_(False)
    return model


PENALISED = {
    *(f"bert.encoder.layer.0.attention.self.{name}.weight" for name in ("query", "key", "value")),
    "bert.encoder.layer.0.attention.output.dense.weight",
    "bert.encoder.layer.0.intermediate.dense.weight",
    "bert.encoder.layer.0.output.dense.weight",
    "bert.pooler.dense.weight",
    "classifier.weight",
}  # no biases, no LayerNorm, nothing frozen (the embeddings)


@pytest.mark.parametrize("penalty", [l1_penalty, l2_penalty])
def test_l1_and_l2_penalise_trainable_weight_matrices_by_name(penalty):
    model = constant_model()
    penalty(model).backward()
    named = {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert named == PENALISED


def test_l1_and_l2_values_for_known_weights():
    model = constant_model()
    assert l1_penalty(model).item() == pytest.approx(3776.0)
    assert l2_penalty(model).item() == pytest.approx(944.0)


def test_penalty_terms_scale_by_their_coefficient_in_training_only():
    model = constant_model()
    spec = RegularizationSection(l1=1e-4, l2=1e-3)
    model.train()
    terms = terms_of(spec, model, batch())
    assert set(terms) == {"task", "l1", "l2"}
    assert terms["l1"].item() == pytest.approx(0.3776)
    assert terms["l2"].item() == pytest.approx(0.944)
    model.eval()
    assert set(terms_of(spec, model, batch())) == {"task"}  # the validation loss is the task loss


def test_l2_sp_is_zero_at_the_start_and_half_the_squared_distance_after():
    model = pretrained_model()
    anchors = pretrained_anchors(model)
    anchored = {id(p) for p, _ in anchors}
    assert id(model.classifier.weight) not in anchored and id(model.classifier.bias) not in anchored
    assert len(anchors) == len(list(model.parameters())) - 2
    assert l2_sp_penalty(anchors).item() == 0.0
    with torch.no_grad():
        model.bert.pooler.dense.weight.add_(0.1)
        model.classifier.weight.add_(5.0)  # the head moves freely
    expected = 0.5 * 0.1**2 * model.bert.pooler.dense.weight.numel()
    assert l2_sp_penalty(anchors).item() == pytest.approx(expected, rel=1e-4)
    model.bert.pooler.requires_grad_(False)  # frozen parameters are not penalised
    assert l2_sp_penalty(anchors).item() == pytest.approx(0.0, abs=1e-9)


def test_l2_sp_and_mixout_leave_reinitialised_layers_alone():
    from finetune.layers.surgery import apply_layer_sections

    model = pretrained_model()
    recipe = load_recipe("base", ["reinit.top=1", "regularization.l2_sp=0.1"])
    apply_layer_sections(
        model, recipe
    )  # re-initialises layer.3, as prepare() does before the Trainer anchors
    top, below = model.bert.encoder.layer[3], model.bert.encoder.layer[2]
    assert "bert.encoder.layer.3.attention.self.query.weight" in model.new_parameters
    assert set(HEAD) <= set(model.new_parameters)
    anchors = pretrained_anchors(model)
    assert not {id(p) for p in top.parameters()} & {id(p) for p, _ in anchors}
    with torch.no_grad():
        top.output.dense.weight.add_(1.0)  # a random layer trains freely
    assert l2_sp_penalty(anchors).item() == 0.0
    with torch.no_grad():
        below.output.dense.weight.add_(0.1)
    expected = 0.5 * 0.1**2 * below.output.dense.weight.numel()
    assert l2_sp_penalty(anchors).item() == pytest.approx(expected, rel=1e-4)
    swapped = apply_mixout(model, 0.5)
    assert "bert.encoder.layer.2.output.dense" in swapped
    assert not [name for name in swapped if name.startswith("bert.encoder.layer.3.")]


@functools.cache
def trained(**settings):
    """A tiny model after 10 AdamW steps (no weight decay) with these regularization settings:
    (final parameters, their values before training), same seed and data for every call."""
    torch.manual_seed(0)
    model = pretrained_model(
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, vocab_size=1000, num_hidden_layers=2
    )
    anchors = pretrained_anchors(model)
    start = [w0 for _, w0 in anchors]
    spec = RegularizationSection(**settings)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    model.train()
    for step in range(10):
        loss = sum(terms_of(spec, model, batch(8, seed=step), anchors=anchors).values())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return [p.detach() for p, _ in anchors], start


def test_l2_sp_pulls_weights_towards_their_pretrained_values():
    def distance(params_and_start):
        return sum((p - w0).pow(2).sum().item() for p, w0 in zip(*params_and_start))

    plain, anchored = distance(trained()), distance(trained(l2_sp=1.0))
    assert plain > 0
    assert anchored < 0.5 * plain


def test_l1_and_l2_shrink_the_weight_matrices():
    def norms(params_and_start):
        matrices = [p for p in params_and_start[0] if p.ndim >= 2]
        return sum(p.abs().sum().item() for p in matrices), sum(p.pow(2).sum().item() for p in matrices)

    plain_l1, plain_l2 = norms(trained())
    assert norms(trained(l1=1e-3))[0] < plain_l1
    assert norms(trained(l2=1e-2))[1] < plain_l2


# --- label smoothing and dropout overrides ---


def test_label_smoothing_mixes_the_target_with_the_uniform_distribution():
    model = pretrained_model().train()
    inputs = batch()
    outputs = model(**{k: v for k, v in inputs.items() if k != "labels"})
    log_p = outputs.logits.log_softmax(-1)
    nll = -log_p.gather(1, inputs["labels"][:, None]).mean()
    uniform = -log_p.mean()
    terms = loss_terms(RegularizationSection(label_smoothing=0.2), "classification", model, inputs, outputs)
    assert terms["task"].item() == pytest.approx((0.8 * nll + 0.2 * uniform).item(), rel=1e-5)
    model.eval()  # validation loss: no smoothing
    terms = loss_terms(RegularizationSection(label_smoothing=0.2), "classification", model, inputs, outputs)
    assert terms["task"].item() == pytest.approx(nll.item(), rel=1e-5)


def test_dropout_overrides_set_every_name_the_architecture_uses():
    from conftest import tiny_bert_config
    from transformers import DistilBertConfig

    from finetune.errors import FinetuneError
    from finetune.regularization.losses import dropout_overrides

    spec = RegularizationSection(hidden_dropout=0.2, attention_dropout=0.0, classifier_dropout=0.3)
    assert dropout_overrides(tiny_bert_config(), spec) == {
        "hidden_dropout_prob": 0.2,
        "attention_probs_dropout_prob": 0.0,
        "classifier_dropout": 0.3,
    }
    distil = dropout_overrides(DistilBertConfig(), spec)
    assert distil == {"dropout": 0.2, "attention_dropout": 0.0, "seq_classif_dropout": 0.3}
    # DeBERTa's classifier reads `cls_dropout`, absent from its config (else it uses hidden_dropout_prob)
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification

    small = dict(
        vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37
    )
    config = DebertaV2Config(**small)
    overrides = dropout_overrides(config, RegularizationSection(classifier_dropout=0.3))
    assert overrides == {"pooler_dropout": 0.3, "cls_dropout": 0.3}
    for key, value in overrides.items():
        setattr(config, key, value)
    model = DebertaV2ForSequenceClassification(config)
    assert model.dropout.p == 0.3 and model.pooler.dropout.p == 0.3
    with pytest.raises(FinetuneError, match="regularization.classifier_dropout"):
        dropout_overrides(
            type("Config", (), {"model_type": "x"})(), RegularizationSection(classifier_dropout=0.1)
        )


# --- R-Drop ---


def test_rdrop_runs_the_batch_twice_in_training_only():
    model = pretrained_model()
    spec = RegularizationSection(rdrop=1.0)
    inputs = batch()
    model.train()
    doubled = forward_inputs(spec, model, inputs)
    assert doubled["input_ids"].shape[0] == 8 and "labels" not in doubled
    assert torch.equal(doubled["input_ids"][:4], doubled["input_ids"][4:])
    model.eval()
    assert forward_inputs(spec, model, inputs)["input_ids"].shape[0] == 4


def test_rdrop_term_is_zero_without_dropout_and_positive_with_it():
    spec = RegularizationSection(rdrop=2.0)
    no_dropout = pretrained_model(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0).train()
    terms = terms_of(spec, no_dropout, batch())
    assert terms["rdrop"].item() == pytest.approx(0.0, abs=1e-6)
    with_dropout = pretrained_model(hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3).train()
    torch.manual_seed(0)
    terms = terms_of(spec, with_dropout, batch())
    assert terms["rdrop"].item() > 1e-4


def test_rdrop_task_term_is_the_mean_over_both_passes_and_alpha_is_the_papers():
    model = pretrained_model(hidden_dropout_prob=0.3).train()
    spec = RegularizationSection(rdrop=1.0)
    inputs = batch()
    torch.manual_seed(0)
    logits = model(**forward_inputs(spec, model, inputs)).logits
    first, second = logits.chunk(2)
    expected_task = (F.cross_entropy(first, inputs["labels"]) + F.cross_entropy(second, inputs["labels"])) / 2
    # the R-Drop authors' compute_kl_loss: KL summed over the batch (not averaged), both directions halved
    p_loss = F.kl_div(F.log_softmax(first, -1), F.softmax(second, -1), reduction="none").sum()
    q_loss = F.kl_div(F.log_softmax(second, -1), F.softmax(first, -1), reduction="none").sum()
    terms = loss_terms(spec, "classification", model, inputs, type("Out", (), {"logits": logits})())
    assert terms["task"].item() == pytest.approx(expected_task.item(), rel=1e-5)
    assert terms["rdrop"].item() == pytest.approx(((p_loss + q_loss) / 2).item(), rel=1e-4)


def test_rdrop_divergence_for_the_other_tasks():
    a, b = torch.tensor([[0.5, -1.0]]), torch.tensor([[-0.5, 2.0]])
    sa, sb = a.sigmoid(), b.sigmoid()
    bernoulli_kl = lambda x, y: x * (x / y).log() + (1 - x) * ((1 - x) / (1 - y)).log()  # noqa: E731
    expected = 0.5 * (bernoulli_kl(sa, sb) + bernoulli_kl(sb, sa)).sum()
    assert rdrop_divergence(a, b, "multi_label", None).item() == pytest.approx(expected.item(), rel=1e-5)
    assert rdrop_divergence(a, b, "regression", None).item() == pytest.approx(((a - b) ** 2).sum().item())
    tokens_a, tokens_b = torch.randn(1, 3, 4), torch.randn(1, 3, 4)
    labels = torch.tensor([[-100, 2, -100]])  # only the labelled sub-word counts
    only = rdrop_divergence(tokens_a[:, 1], tokens_b[:, 1], "classification", None)
    assert rdrop_divergence(tokens_a, tokens_b, "token_classification", labels).item() == pytest.approx(
        only.item()
    )


# --- Mixout ---


def test_mixout_keeps_the_expectation_and_mixes_towards_the_anchor():
    torch.manual_seed(0)
    weight, anchor = torch.full((200, 200), 2.0), torch.zeros(200, 200)
    draw = mixout(weight, anchor, 0.7)
    # each element is its anchor, or the weight kept and rescaled
    assert sorted(draw.unique().tolist()) == pytest.approx([0.0, 2.0 / 0.3])
    assert draw.mean().item() == pytest.approx(2.0, rel=0.05)
    assert torch.allclose(mixout(anchor + 1.5, anchor + 1.5, 0.7), anchor + 1.5)  # at w0: no change


def test_apply_mixout_swaps_pretrained_linears_and_keeps_parameters_and_keys():
    model = pretrained_model(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    keys, parameters = list(model.state_dict()), {id(p) for p in model.parameters()}
    swapped = apply_mixout(model, 0.5)
    assert "classifier" not in swapped and "bert.pooler.dense" in swapped
    assert isinstance(model.bert.encoder.layer[0].attention.self.query, MixoutLinear)
    assert list(model.state_dict()) == keys and {id(p) for p in model.parameters()} == parameters
    inputs = {k: v for k, v in batch().items() if k != "labels"}
    model.train()
    first = model(**inputs).logits
    assert torch.allclose(model(**inputs).logits, first)  # weights at their anchors: no effect yet
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, MixoutLinear):
                module.weight.add_(0.05)
    torch.manual_seed(1)
    assert not torch.allclose(model(**inputs).logits, model(**inputs).logits)  # random mixes in training
    model.eval()
    assert torch.equal(model(**inputs).logits, model(**inputs).logits)


# --- clipping by value ---


def test_clip_grad_value_clamps_every_element():
    model = pretrained_model()
    model(**batch()).loss.mul(1e4).backward()
    assert max(p.grad.abs().max().item() for p in model.parameters() if p.grad is not None) > 1e-3
    ClipGradValue(2**-10).on_pre_optimizer_step(None, None, None, model=model)
    assert max(p.grad.abs().max().item() for p in model.parameters() if p.grad is not None) == 2**-10


# --- SWA ---


class FakeState:
    def __init__(self, max_steps):
        self.max_steps, self.global_step = max_steps, 0


def test_swa_weights_are_the_mean_of_the_snapshots_from_start_on():
    model = torch.nn.Linear(3, 2)
    swa = StochasticWeightAveraging(start=0.5, every=2)
    state = FakeState(max_steps=8)
    swa.on_train_begin(None, state, None, model=model)
    snapshots = []
    for step in range(1, 9):
        with torch.no_grad():
            model.weight.fill_(float(step))
        state.global_step = step
        swa.on_step_end(None, state, None, model=model)
        if step % 2 == 0 and step >= 4:
            snapshots.append(model.weight.detach().clone())
    swa.on_train_end(None, state, None, model=model)
    assert swa.steps == [4, 6, 8]
    assert torch.allclose(model.weight, torch.stack(snapshots).mean(0))  # (4 + 6 + 8) / 3 = 6
    assert model.weight[0, 0].item() == pytest.approx(6.0)


def test_swa_refuses_batch_norm():
    from finetune.errors import FinetuneError

    with pytest.raises(FinetuneError, match="BatchNorm"):
        StochasticWeightAveraging(0.5).on_train_begin(None, FakeState(4), None, model=torch.nn.BatchNorm1d(3))


# --- schema ---


def test_regularization_keys_that_conflict():
    with pytest.raises(RecipeError, match="give `clip_grad_value` or `clip_grad_norm`, not both"):
        load_recipe("base", ["regularization.clip_grad_value=0.5"])
    assert load_recipe("base", ["regularization.clip_grad_value=0.5", "regularization.clip_grad_norm=null"])
    with pytest.raises(RecipeError, match="`swa_every` needs `swa_start`"):
        load_recipe("base", ["regularization.swa_every=10"])
    with pytest.raises(RecipeError, match="regularization.mixout"):
        load_recipe("base", ["regularization.mixout=1.0"])
    with pytest.raises(RecipeError, match="`rdrop` cannot be combined with `mixout`.*one weight mask"):
        load_recipe("base", ["regularization.rdrop=1.0", "regularization.mixout=0.5"])
    assert load_recipe("base", ["regularization.rdrop=1.0"]).regularization.rdrop == 1.0


# --- through the real Trainer ---


class Probe:
    """Records weights at every step end and the largest gradient at every optimizer step."""

    def __new__(cls):
        from transformers import TrainerCallback

        class _Probe(TrainerCallback):
            def __init__(self):
                self.weights, self.max_grad = {}, []

            def on_optimizer_step(self, args, state, control, model=None, **kwargs):
                self.max_grad.append(
                    max(p.grad.abs().max().item() for p in model.parameters() if p.grad is not None)
                )

            def on_step_end(self, args, state, control, model=None, **kwargs):
                self.weights[state.global_step] = model.classifier.weight.detach().clone()

        return _Probe()


def test_trainer_logs_each_term_clips_by_value_and_ends_on_the_swa_mean(tiny_recipe):
    from finetune.training.run import train

    tiny_recipe["regularization"] = {
        "l1": 1e-6,
        "l2_sp": 0.1,
        "rdrop": 0.5,
        "clip_grad_norm": None,
        "clip_grad_value": 2**-13,
        "swa_start": 0.5,
        "swa_every": 2,
    }
    tiny_recipe["training"].update(max_steps=8, logging_steps=2)
    tiny_recipe["output"].update(plots=False, save_model=False)
    tiny_recipe["checkpoints"] = {"every_epoch": False}  # no checkpoint writing: faster
    probe = Probe()
    result = train(validate_recipe(tiny_recipe), callbacks=[probe])
    logs = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    training = [r for r in logs if "loss" in r]
    assert training and all({"loss_task", "loss_l1", "loss_l2_sp", "loss_rdrop"} <= set(r) for r in training)
    for record in training:  # the logged loss is the sum of its terms
        parts = record["loss_task"] + record["loss_l1"] + record["loss_l2_sp"] + record["loss_rdrop"]
        assert record["loss"] == pytest.approx(parts, rel=1e-3)
    assert max(probe.max_grad) <= 2**-13 and len(probe.max_grad) == 8
    temperature = (result.results.get("calibration") or {}).get("temperature", 1.0)  # folded into the head
    final = result.trainer.model.classifier.weight.detach() * temperature
    mean = torch.stack([probe.weights[s] for s in (4, 6, 8)]).mean(0)
    assert result.results["swa"]["steps"] == [4, 6, 8]
    assert torch.allclose(final, mean.to(final.device), atol=1e-6)
    assert not math.isclose(final.abs().sum().item(), probe.weights[8].abs().sum().item(), rel_tol=1e-9)
