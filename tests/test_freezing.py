"""Freezing by block: exactly the intended parameters stop training."""

import pytest
from conftest import tiny_bert

from finetune.anatomy import model_anatomy
from finetune.errors import FinetuneError
from finetune.freezing import apply_freeze, resolve_layer_indices
from finetune.recipe.freeze import FreezeSection


def trainable_names(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_anatomy_of_bert_lists_blocks_bottom_up():
    model = tiny_bert()
    anatomy = model_anatomy(model)
    assert list(anatomy.blocks) == [
        "embeddings",
        "layer.0",
        "layer.1",
        "layer.2",
        "layer.3",
        "pooler",
        "head",
    ]
    assert anatomy.blocks["head"] == ["classifier.weight", "classifier.bias"]
    assert all(n.startswith("bert.encoder.layer.2.") for n in anatomy.blocks["layer.2"])
    every = [n for names in anatomy.blocks.values() for n in names]
    assert sorted(every) == sorted(n for n, _ in model.named_parameters())  # complete and disjoint


def test_freeze_embeddings_and_a_range():
    model = tiny_bert()
    summary = apply_freeze(model, FreezeSection(embeddings=True, layers=["0-1"]), model_anatomy(model))
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


def test_negative_indices_count_from_the_top():
    assert resolve_layer_indices([-1, 0], 4) == [0, 3]
    model = tiny_bert()
    apply_freeze(model, FreezeSection(layers=[-1]), model_anatomy(model))
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith("bert.encoder.layer.3.") for n in frozen)


def test_out_of_range_layer_names_the_layer_count():
    with pytest.raises(FinetuneError, match="the model has 4 encoder layers, indices 0..3"):
        resolve_layer_indices(["2-5"], 4)
    with pytest.raises(FinetuneError, match="layer -5"):
        resolve_layer_indices([-5], 4)


def test_freezing_everything_is_an_error():
    model = tiny_bert()
    anatomy = model_anatomy(model)
    spec = FreezeSection(embeddings=True, layers=["0-3"])
    apply_freeze(model, spec, anatomy)  # head and pooler still train: fine
    # an anatomy in which the head is part of the frozen embeddings: nothing would be left to train
    anatomy.blocks["embeddings"] += anatomy.blocks.pop("pooler") + anatomy.blocks.pop("head")
    with pytest.raises(FinetuneError, match="freezes every parameter"):
        apply_freeze(model, spec, anatomy)


def test_unknown_architecture_lists_supported_ones():
    import torch

    class Strange(torch.nn.Module):
        config = type("C", (), {"model_type": "strange"})()

    with pytest.raises(FinetuneError, match=r"'strange' is not one finetune knows.*bert.*regex"):
        model_anatomy(Strange())
