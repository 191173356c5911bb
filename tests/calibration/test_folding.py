"""Folding T into the head: the model's logits become logits / T exactly, in every architecture
finetune knows, saved and reloaded, and under peft's wrapped head."""

import pytest
import torch
from architectures import ARCHITECTURES, tiny_model
from conftest import tiny_bert

from finetune.calibration.folding import fold_temperature, logit_layers
from finetune.errors import FinetuneError

INPUTS = torch.tensor([[5, 17, 23, 42, 8, 3], [5, 61, 2, 9, 77, 3]])


def logits_of(model):
    model.eval()
    with torch.no_grad():
        return model(input_ids=INPUTS).logits


@pytest.mark.parametrize("model_type", sorted(ARCHITECTURES))
def test_folding_divides_every_architectures_logits_by_t(model_type, one_thread):
    model = tiny_model(model_type, num_labels=3)
    before = logits_of(model)
    fold_temperature(model, 2.5, num_labels=3)
    after = logits_of(model)
    torch.testing.assert_close(after, before / 2.5, rtol=1e-5, atol=1e-6)
    assert torch.equal(after.argmax(-1), before.argmax(-1))


@pytest.mark.parametrize(
    ("model_type", "layer"), [("bert", "classifier"), ("roberta", "classifier.out_proj")]
)
def test_the_saved_model_loads_with_the_folded_logits(model_type, layer, tmp_path, one_thread):
    from transformers import AutoModelForSequenceClassification

    model = tiny_model(model_type)
    before = logits_of(model)
    assert fold_temperature(model, 4.0, num_labels=2) == [layer]
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    torch.testing.assert_close(logits_of(reloaded), before / 4.0, rtol=1e-5, atol=1e-6)


def test_a_peft_wrapped_head_is_folded_in_its_trained_copy(one_thread):
    from finetune.model.peft import add_adapters
    from finetune.recipe.peft import PeftSection

    model = tiny_bert(num_labels=3)
    wrapper = add_adapters(model, PeftSection(method="lora"), "classification", [])
    with torch.no_grad():  # a trained LoRA update, so that merging changes something
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    before = logits_of(model)
    names = fold_temperature(model, 2.0, num_labels=3)
    assert names == ["classifier.modules_to_save.default"]  # the frozen original stays as it was
    torch.testing.assert_close(logits_of(model), before / 2.0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logits_of(wrapper.merge_and_unload()), before / 2.0, rtol=1e-5, atol=1e-6)


def test_a_lora_adapter_on_the_head_itself_is_refused():
    from peft import LoraConfig, get_peft_model

    model = tiny_bert(num_labels=3)
    get_peft_model(model, LoraConfig(target_modules=["query", "classifier"]))
    with pytest.raises(FinetuneError, match="carries a LoRA adapter"):
        logit_layers(model, 3)


def test_a_head_without_a_layer_per_label_is_a_clear_error():
    with pytest.raises(FinetuneError, match="no linear layer with 5 outputs"):
        fold_temperature(tiny_bert(num_labels=3), 2.0, num_labels=5)


def test_a_non_positive_temperature_is_refused():
    with pytest.raises(FinetuneError, match="must be positive"):
        fold_temperature(tiny_bert(), 0.0, num_labels=2)
