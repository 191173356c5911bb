"""Parameter groups: weight decay exclusions, frozen parameters never optimized."""

import pytest
from conftest import tiny_bert

from finetune.layers.freezing import apply_freeze
from finetune.model.anatomy import model_anatomy
from finetune.optimizer.param_groups import build_optimizer, check_groups, param_groups
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
    groups = param_groups(model, OptimizerSection(lr=2e-5))
    optimizer = build_optimizer(groups, OptimizerSection(lr=2e-5))
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


# --- per-block groups: layer-wise LR decay, explicit LRs, freezing, gradual unfreezing ---


def llrd_groups(model, decay=None, lrs=None, lr=1e-3, later=()):
    from finetune.recipe.layer_lr import LayerLRSection

    layer_lr = LayerLRSection(decay=decay, lrs=lrs or {})
    return param_groups(model, OptimizerSection(lr=lr, weight_decay=0.01), layer_lr, later)


def lr_by_block(groups):
    by_block = {}
    for group in groups:
        assert by_block.setdefault(group["block"], group["lr"]) == group["lr"]
    return by_block


def test_layerwise_decay_gives_exact_lrs_head_first():
    groups = llrd_groups(tiny_bert(), decay=0.5)
    assert lr_by_block(groups) == {
        "head": 1e-3,
        "pooler": 1e-3,
        "layer.3": 5e-4,
        "layer.2": 2.5e-4,
        "layer.1": 1.25e-4,
        "layer.0": 6.25e-5,
        "embeddings": 3.125e-5,
    }
    assert [g["block"] for g in groups][:2] == ["head", "head"]  # group 0 (the logged LR) is the head's
    for group in groups:  # decay and no-decay kept apart inside each block
        decays = group["weight_decay"] > 0
        assert all((".LayerNorm." in n or n.endswith(".bias")) != decays for n in group["names"])
    assert sum(len(g["params"]) for g in groups) == len(list(tiny_bert().parameters()))


def test_explicit_block_lrs_override_the_decay():
    groups = llrd_groups(
        tiny_bert(), decay=0.5, lrs={"embeddings": 1e-5, "0-1": 2e-5, -1: 3e-5, "head": 1e-2}
    )
    lrs = lr_by_block(groups)
    assert lrs == {
        "head": 1e-2,
        "pooler": 1e-3,
        "layer.3": 3e-5,
        "layer.2": 2.5e-4,
        "layer.1": 2e-5,
        "layer.0": 2e-5,
        "embeddings": 1e-5,
    }


def test_a_block_lr_for_a_layer_the_model_lacks_names_the_layer_count():
    from finetune.errors import FinetuneError

    with pytest.raises(FinetuneError, match=r"layer_lr.lrs: layer 7 .* 4 encoder layers"):
        llrd_groups(tiny_bert(), lrs={7: 1e-5})


def test_bad_block_keys_are_recipe_errors():
    from finetune.errors import FinetuneError
    from finetune.recipe import validate_recipe

    with pytest.raises(FinetuneError, match=r"layer_lr.lrs.*'encoder' is not a block"):
        validate_recipe({"layer_lr": {"lrs": {"encoder": 1e-5}}})
    with pytest.raises(FinetuneError, match=r"layer_lr.decay"):
        validate_recipe({"layer_lr": {"decay": 1.5}})


def test_frozen_blocks_get_no_group_under_layerwise_decay():
    model = tiny_bert()
    apply_freeze(model, FreezeSection(embeddings=True, layers=[0, 1]), model_anatomy(model))
    groups = llrd_groups(model, decay=0.9)
    assert [g["block"] for g in groups][::2] == ["head", "pooler", "layer.3", "layer.2"]
    check_groups(model, groups)


def test_parameters_unfrozen_later_wait_in_their_own_groups():
    model = tiny_bert()
    anatomy = model_anatomy(model)
    summary = apply_freeze(model, FreezeSection(gradual={"every": 1}), anatomy)
    later = {n for names in summary.pending.values() for n in names}
    groups = llrd_groups(model, later=later)
    assert {g["block"] for g in groups} == set(anatomy.blocks)
    check_groups(model, groups, later)
    with pytest.raises(AssertionError, match="a frozen parameter is in an optimizer group"):
        check_groups(model, groups)


def test_the_schedule_scales_every_block_group_alike():
    from finetune.recipe.schedule import ScheduleSection
    from finetune.schedules.formulas import build_scheduler

    model = tiny_bert()
    groups = llrd_groups(model, decay=0.5)
    peaks = {g["block"]: g["lr"] for g in groups}
    spec = OptimizerSection(lr=1e-3)
    optimizer = build_optimizer(groups, spec)
    scheduler = build_scheduler(optimizer, ScheduleSection(warmup_steps=2), 10)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    factor = (10 - 5) / (10 - 2)  # linear decay, 5 steps in, after 2 warmup steps
    for group in optimizer.param_groups:
        assert group["lr"] == pytest.approx(peaks[group["block"]] * factor)
