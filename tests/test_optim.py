"""Parameter groups: weight decay exclusions, frozen parameters never optimized."""

import pytest
from conftest import tiny_bert

from finetune.anatomy import model_anatomy
from finetune.freezing import apply_freeze
from finetune.optim import build_optimizer, check_groups, param_groups
from finetune.recipe.freeze import FreezeSection
from finetune.recipe.optimizer import OptimizerSection


def test_biases_and_layernorm_weights_get_no_decay():
    model = tiny_bert()
    groups = param_groups(model, OptimizerSection(weight_decay=0.05))
    decay, no_decay = groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert all(not n.endswith(".bias") and "LayerNorm" not in n for n in decay["names"])
    assert "bert.embeddings.LayerNorm.weight" in no_decay["names"]
    assert "bert.encoder.layer.0.attention.output.LayerNorm.weight" in no_decay["names"]
    assert "classifier.bias" in no_decay["names"]
    assert "classifier.weight" in decay["names"]
    assert "bert.embeddings.word_embeddings.weight" in decay["names"]


def test_frozen_parameters_are_not_in_the_optimizer():
    model = tiny_bert()
    apply_freeze(model, FreezeSection(embeddings=True, layers=[0, 1]), model_anatomy(model))
    groups = param_groups(model, OptimizerSection())
    optimizer = build_optimizer(groups, OptimizerSection())
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert in_optimizer == trainable
    names = [n for g in groups for n in g["names"]]
    assert not any(n.startswith(("bert.embeddings.", "bert.encoder.layer.0.")) for n in names)


def test_custom_no_decay_patterns():
    model = tiny_bert()
    _, no_decay = param_groups(model, OptimizerSection(no_decay=["bias", "embeddings"]))
    assert "bert.embeddings.word_embeddings.weight" in no_decay["names"]


def test_check_groups_catches_overlap_and_gaps():
    model = tiny_bert()
    groups = param_groups(model, OptimizerSection())
    with pytest.raises(AssertionError, match="in optimizer groups 0 and 1"):
        check_groups(
            model, [groups[0], {**groups[1], "params": groups[1]["params"] + groups[0]["params"][:1]}]
        )
    with pytest.raises(AssertionError, match="in no optimizer group"):
        check_groups(model, groups[:1])


def test_optimizer_hyperparameters_come_from_the_recipe():
    model = tiny_bert()
    spec = OptimizerSection(lr=3e-4, betas=(0.8, 0.95), eps=1e-6)
    optimizer = build_optimizer(param_groups(model, spec), spec)
    group = optimizer.param_groups[0]
    assert group["lr"] == 3e-4 and group["betas"] == (0.8, 0.95) and group["eps"] == 1e-6
