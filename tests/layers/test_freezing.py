"""Freezing: exactly the intended parameters stop training, for every architecture and every rule."""

import functools

import pytest
import torch
from architectures import ARCHITECTURES, tiny_model
from conftest import tiny_bert

from finetune.errors import FinetuneError
from finetune.layers.freezing import apply_freeze, resolve_layer_indices
from finetune.model.anatomy import model_anatomy
from finetune.recipe.freeze import FreezeSection, count_of


def trainable_names(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def names_of(anatomy, *blocks):
    return {n for b in blocks for n in anatomy.blocks[b]}


def freeze(model, **spec):
    return apply_freeze(model, FreezeSection(**spec), model_anatomy(model))


def backward(model, ids=(3, 7, 8, 9, 4)):
    model.train()
    input_ids = torch.tensor([list(ids), list(reversed(ids))])
    model(input_ids=input_ids, labels=torch.tensor([0, 1])).loss.backward()
    return {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


@pytest.mark.parametrize("model_type", sorted(ARCHITECTURES))
def test_freezing_embeddings_and_the_bottom_layer_of_every_architecture(model_type):
    model = tiny_model(model_type)
    anatomy = model_anatomy(model)
    summary = freeze(model, embeddings=True, layers=[0])
    frozen = names_of(anatomy, "embeddings", "layer.0")
    assert trainable_names(model) == {n for n, _ in model.named_parameters()} - frozen
    assert summary.frozen_blocks == ["embeddings", "layer.0"]
    with_gradient = backward(model)
    assert not with_gradient & frozen  # no gradient reaches a frozen parameter
    assert with_gradient & set(anatomy.blocks["head"])
    if anatomy.num_layers > 1:  # gradients flow through the frozen bottom into the layers above it
        assert with_gradient & set(anatomy.blocks["layer.1"])


def test_freeze_embeddings_and_a_range():
    model = tiny_bert()
    summary = freeze(model, embeddings=True, layers=["0-1"])
    trainable = trainable_names(model)
    assert not any(
        n.startswith(("bert.embeddings.", "bert.encoder.layer.0.", "bert.encoder.layer.1."))
        for n in trainable
    )
    assert any(n.startswith("bert.encoder.layer.2.") for n in trainable)
    assert {"classifier.weight", "classifier.bias", "bert.pooler.dense.weight"} <= trainable
    assert summary.frozen_blocks == ["embeddings", "layer.0", "layer.1"]
    expected = sum(p.numel() for n, p in model.named_parameters() if n in trainable)
    assert summary.trainable == expected
    assert summary.total == sum(p.numel() for p in model.parameters())
    assert (
        summary.line() == f"trainable {expected:,} / total {summary.total:,} ({expected / summary.total:.1%})"
    )


def test_negative_indices_count_from_the_top():
    assert resolve_layer_indices([-1, 0], 4) == [0, 3]
    model = tiny_bert()
    freeze(model, layers=[-1])
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith("bert.encoder.layer.3.") for n in frozen)


@pytest.mark.parametrize(
    ("spec", "blocks"),
    [
        ({"bottom": 2}, ["layer.0", "layer.1"]),
        ({"bottom": 0}, []),
        ({"bottom": "50%"}, ["layer.0", "layer.1"]),
        ({"top": 1}, ["layer.3"]),
        ({"top": "75%"}, ["layer.1", "layer.2", "layer.3"]),
        ({"bottom": 1, "top": 1, "layers": [1]}, ["layer.0", "layer.1", "layer.3"]),
        ({"pooler": True, "head": True}, ["pooler", "head"]),
    ],
)
def test_counts_from_either_end_and_pooler_and_head(spec, blocks):
    model = tiny_bert()
    anatomy = model_anatomy(model)
    summary = freeze(model, **spec, allow_all_frozen=True)
    assert summary.frozen_blocks == blocks
    assert {n for n, p in model.named_parameters() if not p.requires_grad} == names_of(anatomy, *blocks)


@pytest.mark.parametrize(
    ("share", "num_layers", "count"),
    [("29%", 100, 29), ("58%", 50, 29), ("50%", 5, 2), ("12.5%", 24, 3), ("33.3%", 12, 3), ("100%", 7, 7)],
)
def test_shares_of_layers_are_exact_and_round_down(share, num_layers, count):
    assert count_of(share, num_layers) == count  # floats make 29% of 100 28.999..., which int() cut to 28


def test_out_of_range_layer_names_the_layer_count():
    with pytest.raises(FinetuneError, match="the model has 4 encoder layers, indices 0..3"):
        resolve_layer_indices(["2-5"], 4)
    with pytest.raises(FinetuneError, match="layer -5"):
        resolve_layer_indices([-5], 4)
    with pytest.raises(FinetuneError, match=r"freeze.layers: layer 14 .* 4 encoder layers"):
        freeze(tiny_bert(), layers=[14])
    with pytest.raises(FinetuneError, match=r"freeze.bottom: 5 layers, but the model has 4 encoder layers"):
        freeze(tiny_bert(), bottom=5)
    with pytest.raises(FinetuneError, match=r"freeze.train_only.top: 6 layers"):
        freeze(tiny_bert(), train_only={"top": 6})


def test_patterns_freeze_exactly_the_parameters_they_match():
    model = tiny_bert()
    freeze(model, patterns=[r"attention\.self\.(query|key)\.weight$"])
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert len(frozen) == 8  # 4 layers x query and key
    assert all(n.endswith(("query.weight", "key.weight")) for n in frozen)


def test_a_pattern_that_matches_nothing_lists_the_nearest_names():
    expected = (
        r"freeze.patterns: 'encoder.layers.0' matches no parameter.*nearest parameter names: bert.encoder"
    )
    with pytest.raises(FinetuneError, match=expected):
        freeze(tiny_bert(), patterns=["encoder.layers.0"])
    with pytest.raises(FinetuneError, match=r"freeze.train_only.patterns: 'qkv'"):
        freeze(tiny_bert(), train_only={"patterns": ["qkv"]})


def test_an_invalid_regex_is_a_recipe_error():
    from finetune.recipe import validate_recipe

    with pytest.raises(FinetuneError, match=r"freeze.patterns.*not a regular expression"):
        validate_recipe({"freeze": {"patterns": ["layer.(0"]}})


def test_train_only_layernorms_keeps_exactly_the_layernorms_and_the_head():
    model = tiny_bert()
    summary = freeze(model, train_only={"modules": ["LayerNorm"]})
    trainable = trainable_names(model)
    assert trainable == {n for n in (n for n, _ in model.named_parameters()) if ".LayerNorm." in n} | {
        "classifier.weight",
        "classifier.bias",
    }
    assert len(trainable) == 2 + 2 * (1 + 2 * 4)  # head; weight and bias of 1 + 2 per layer LayerNorms
    assert summary.partly_frozen_blocks == ["embeddings", "layer.0", "layer.1", "layer.2", "layer.3"]
    assert summary.frozen_blocks == ["pooler"]


def test_train_only_the_top_layers_pooler_and_head():
    model = tiny_bert()
    anatomy = model_anatomy(model)
    freeze(model, train_only={"top": 2, "pooler": True})
    assert trainable_names(model) == names_of(anatomy, "layer.2", "layer.3", "pooler", "head")


def test_train_only_can_freeze_the_head_too_and_combines_with_freeze():
    model = tiny_bert()
    anatomy = model_anatomy(model)
    freeze(model, train_only={"top": 2, "head": False}, layers=[3])
    assert trainable_names(model) == names_of(anatomy, "layer.2")


def test_a_module_class_that_matches_nothing_lists_the_nearest_classes():
    with pytest.raises(FinetuneError, match=r"no module of class 'LayerNrom'.*nearest classes: LayerNorm"):
        freeze(tiny_bert(), train_only={"modules": ["LayerNrom"]})


def test_freezing_everything_is_an_error_unless_allowed():
    model = tiny_bert()
    with pytest.raises(FinetuneError, match="freezes every parameter.*allow_all_frozen"):
        freeze(model, embeddings=True, layers=["0-3"], pooler=True, head=True)
    with pytest.raises(FinetuneError, match="freezes every parameter"):
        freeze(model, train_only={"patterns": ["classifier"], "head": False}, head=True)
    summary = freeze(model, embeddings=True, bottom=4, pooler=True, head=True, allow_all_frozen=True)
    assert summary.trainable == 0 and not trainable_names(model)


def test_a_missing_pooler_is_a_note_not_an_error():
    model = tiny_model("roberta")
    summary = freeze(model, embeddings=True, pooler=True)
    assert summary.notes == ["freeze.pooler: this roberta model has no pooler; nothing selected there"]


def test_albert_freezes_its_shared_layer_as_a_whole_and_refuses_one_repetition():
    model = tiny_model("albert", num_hidden_layers=6)
    anatomy = model_anatomy(model)
    freeze(model, layers=[0])
    assert trainable_names(model) == {n for n, _ in model.named_parameters()} - names_of(anatomy, "layer.0")
    with pytest.raises(FinetuneError, match=r"layer 3 .* 1 shared layer applied 6 times.*cannot be frozen"):
        freeze(model, layers=[3])
    with pytest.raises(FinetuneError, match=r"freeze.bottom: 3 layers, but the model has 1 shared layer"):
        freeze(model, bottom=3)


def test_unknown_architectures_freeze_by_pattern_and_head():
    class Strange(torch.nn.Module):
        base_model_prefix = "encoder"
        config = type("C", (), {"model_type": "strange"})()

        def __init__(self):
            super().__init__()
            self.encoder = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
            self.score = torch.nn.Linear(4, 2)

    model = Strange()
    apply_freeze(model, FreezeSection(patterns=[r"^encoder\.0\."]))
    assert trainable_names(model) == {"encoder.1.weight", "encoder.1.bias", "score.weight", "score.bias"}
    apply_freeze(model, FreezeSection(train_only={"modules": ["LayerNorm"]}))
    assert trainable_names(model) == {"encoder.1.weight", "encoder.1.bias", "score.weight", "score.bias"}
    with pytest.raises(FinetuneError, match=r"'strange' is not one finetune knows.*freeze.patterns"):
        apply_freeze(model, FreezeSection(embeddings=True))


def test_eval_mode_keeps_frozen_blocks_deterministic_while_the_rest_trains():
    model = tiny_bert(hidden_dropout_prob=0.5, attention_probs_dropout_prob=0.5)
    anatomy = model_anatomy(model)
    summary = freeze(model, embeddings=True, layers=[0], eval_mode=True)
    outputs = []
    model.layers_output = anatomy.layers[0].register_forward_hook(lambda m, i, o: outputs.append(o))
    input_ids = torch.tensor([[3, 7, 8, 9, 4]])
    model.train()
    model(input_ids=input_ids)
    model.train()  # what the Trainer does before every step
    model(input_ids=input_ids)
    first, second = (o[0] if isinstance(o, tuple) else o for o in outputs)
    assert torch.equal(first, second)  # no dropout in the frozen embeddings and layer 0
    assert not anatomy.layers[0].training and not anatomy.embeddings[0].training
    assert anatomy.layers[1].training and model.training  # the trainable rest keeps dropout
    assert set(summary.eval_guard.blocks) == {"embeddings", "layer.0"}


def test_frozen_blocks_keep_dropout_by_default():
    model = tiny_bert()
    anatomy = model_anatomy(model)
    summary = freeze(model, embeddings=True)
    model.train()
    model(input_ids=torch.tensor([[3, 7, 4]]))
    assert summary.eval_guard is None and anatomy.embeddings[0].training


def test_non_reentrant_checkpointing_trains_the_layers_above_frozen_embeddings():
    model = tiny_bert()
    anatomy = model_anatomy(model)
    freeze(model, embeddings=True)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    with_gradient = backward(model)
    for block in ("layer.0", "layer.3", "pooler", "head"):
        assert set(anatomy.blocks[block]) <= with_gradient, block
    assert not with_gradient & set(anatomy.blocks["embeddings"])


def test_reentrant_checkpointing_without_input_gradients_is_the_trap_we_avoid():
    from torch.utils.checkpoint import checkpoint

    model = tiny_bert()
    anatomy = model_anatomy(model)
    freeze(model, embeddings=True)
    reentrant = functools.partial(checkpoint, use_reentrant=True)
    model._set_gradient_checkpointing(enable=True, gradient_checkpointing_func=reentrant)
    with_gradient = backward(model)
    assert not with_gradient & set(anatomy.blocks["layer.0"])  # the layers silently do not train
    assert with_gradient & set(anatomy.blocks["head"])


def test_the_recipe_switch_maps_to_non_reentrant_checkpointing(tmp_path):
    from finetune.recipe import validate_recipe
    from finetune.training.arguments import training_arguments

    args = training_arguments(validate_recipe({"training": {"gradient_checkpointing": True}}), tmp_path)
    assert args.activation_checkpointing and args.activation_checkpointing_kwargs == {"use_reentrant": False}
    assert not training_arguments(validate_recipe({}), tmp_path).activation_checkpointing


# --- every shipped layer recipe trains, and moves exactly what it says ---

LAYER_RECIPES = {  # recipe -> blocks it keeps frozen for the whole run
    "freeze-embeddings": ["embeddings"],
    "freeze-bottom-half": ["embeddings", "layer.0", "layer.1"],
    "top-2-only": ["embeddings", "layer.0", "layer.1"],
    "gradual-unfreeze": ["embeddings"],
    "llrd": [],
    "layernorm-only": ["pooler"],
    "reinit-top-2": [],
    "recommended": [],  # base + reinit.top 1
}


def test_every_shipped_layer_recipe_is_tested():
    from conftest import REPO

    from finetune.recipe import load_recipe

    base = load_recipe("base")
    layered = {
        path.stem
        for path in sorted((REPO / "recipes").rglob("*.yaml"))
        if not path.name.endswith(".sweep.yaml")  # sweep files, not recipes
        and any(
            getattr(load_recipe(path), key) != getattr(base, key) for key in ("freeze", "layer_lr", "reinit")
        )
    }
    assert layered == set(LAYER_RECIPES)


@pytest.mark.parametrize("name", sorted(LAYER_RECIPES))
def test_shipped_layer_recipe_trains_and_moves_only_its_trainable_parameters(name, tiny_recipe, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from finetune.recipe import load_recipe
    from finetune.training.run import train

    data = tiny_recipe["data"]
    recipe = load_recipe(
        name,
        [
            f"model.name={tiny_recipe['model']['name']}",
            f"data.train={data['train']}",
            f"data.validation={data['validation']}",
            "data.max_length=16",
            "training.epochs=2",
            "training.max_steps=4",
            "training.batch_size=8",
            "evaluation.every=4",  # one evaluation, at the end: the restored best weights are the last ones
            "evaluation.before_training=false",
            f"output.dir={tmp_path / 'run'}",
            "output.save_model=false",
            "output.plots=false",
            # through the Trainer: frozen embeddings under gradient checkpointing still train the layers
            *(["training.gradient_checkpointing=true"] if name == "freeze-embeddings" else []),
        ],
    )
    result = train(recipe)
    model = result.trainer.model
    assert result.results["frozen_blocks"] == LAYER_RECIPES[name]
    before = AutoModelForSequenceClassification.from_pretrained(tiny_recipe["model"]["name"]).state_dict()
    after = dict(model.named_parameters())
    if name in (
        "reinit-top-2",
        "recommended",
    ):  # re-initialised blocks differ from the checkpoint whatever training did
        reinit = model_anatomy(model).blocks
        assert all(not torch.equal(after[n].cpu(), before[n]) for n in reinit["layer.3"] + reinit["pooler"])
    changed = {n for n, p in after.items() if not torch.equal(p.detach().cpu(), before[n])}
    assert changed == {n for n, p in after.items() if p.requires_grad}
    if name == "gradual-unfreeze":  # every 0.5 epoch = 3 steps: layer.3 joined before step 4, no other
        assert [h["block"] for h in result.results["unfrozen_during_training"]] == ["layer.3"]
