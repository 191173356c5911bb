"""PEFT: LoRA and IA3 adapters on a frozen encoder; only adapters and the head change; saving both ways."""

import pytest
import torch
from conftest import tiny_bert

from finetune.errors import FinetuneError, RecipeError
from finetune.model.peft import (
    adapter_parameter_names,
    add_adapters,
    load_adapted_model,
    trained_modules,
)
from finetune.recipe import validate_recipe
from finetune.recipe.peft import PeftSection
from finetune.training.run import train


def tiny_roberta():
    """A 2-layer RoBERTa, hidden size 32 (its head: classifier.dense and classifier.out_proj)."""
    from transformers import RobertaConfig, RobertaForSequenceClassification

    torch.manual_seed(0)
    config = RobertaConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=40,
    )
    return RobertaForSequenceClassification(config)


def names_with_gradients(model, spec: PeftSection) -> set[str]:
    """Parameters that get a gradient from one backward pass after the recipe's adapters are added."""
    wrapper = add_adapters(model, spec, "classification", [])
    wrapper(input_ids=torch.tensor([[0, 5, 6, 2]]), labels=torch.tensor([1])).loss.backward()
    return {n.removeprefix("base_model.model.") for n, p in wrapper.named_parameters() if p.grad is not None}


def per_layer(base: str, layers: int, modules: list[str], adapter: list[str]) -> set[str]:
    return {f"{base}.encoder.layer.{i}.{m}.{a}" for i in range(layers) for m in modules for a in adapter}


LORA = ["lora_A.default.weight", "lora_B.default.weight"]
IA3 = ["ia3_l.default"]
QUERY_VALUE = ["attention.self.query", "attention.self.value"]
# key, value and the two `output.dense` layers (attention output and feed-forward output)
KEY_VALUE_OUTPUT = ["attention.self.key", "attention.self.value", "attention.output.dense", "output.dense"]
BERT_HEAD = {
    f"{module}.modules_to_save.default.{kind}"
    for module in ("bert.pooler.dense", "classifier")
    for kind in ("weight", "bias")
}
ROBERTA_HEAD = {
    f"classifier.modules_to_save.default.{layer}.{kind}"
    for layer in ("dense", "out_proj")
    for kind in ("weight", "bias")
}


@pytest.mark.parametrize(
    ("make", "method", "expected"),
    [
        (tiny_bert, "lora", per_layer("bert", 4, QUERY_VALUE, LORA) | BERT_HEAD),
        (tiny_bert, "ia3", per_layer("bert", 4, KEY_VALUE_OUTPUT, IA3) | BERT_HEAD),
        (tiny_roberta, "lora", per_layer("roberta", 2, QUERY_VALUE, LORA) | ROBERTA_HEAD),
        (tiny_roberta, "ia3", per_layer("roberta", 2, KEY_VALUE_OUTPUT, IA3) | ROBERTA_HEAD),
    ],
)
def test_default_adapters_and_head_are_exactly_what_trains(make, method, expected):
    assert names_with_gradients(make(), PeftSection(method=method)) == expected


def test_listed_targets_and_modules_to_save_train_and_nothing_else():
    spec = PeftSection(
        method="lora", target_modules=["key"], modules_to_save=["bert.encoder.layer.3.output", "bert.pooler"]
    )
    saved = {
        f"{module}.modules_to_save.default.{leaf}.{kind}"
        for module, leaf in [
            ("bert.encoder.layer.3.output", "dense"),
            ("bert.encoder.layer.3.output", "LayerNorm"),
        ]
        + [("bert.pooler", "dense")]
        for kind in ("weight", "bias")
    }
    classifier = {f"classifier.modules_to_save.default.{kind}" for kind in ("weight", "bias")}
    expected = per_layer("bert", 4, ["attention.self.key"], LORA) | saved | classifier
    assert names_with_gradients(tiny_bert(), spec) == expected


def test_distilbert_defaults_match_its_module_names():
    from transformers import AutoModelForSequenceClassification, DistilBertConfig

    config = DistilBertConfig(dim=32, n_heads=2, hidden_dim=37, n_layers=2, vocab_size=100)
    model = AutoModelForSequenceClassification.from_config(config)
    assert trained_modules(model, []) == ["classifier", "pre_classifier"]
    wrapper = add_adapters(model, PeftSection(method="lora"), "classification", [])
    adapted = {
        name.split(".lora_")[0].rpartition(".")[2]
        for name in adapter_parameter_names(model)
        if ".lora_" in name
    }
    assert adapted == {"q_lin", "v_lin"}
    assert set(wrapper.peft_config["default"].modules_to_save) >= {"classifier", "pre_classifier"}


def test_unknown_targets_name_the_key_and_the_modules_that_exist():
    with pytest.raises(FinetuneError, match=r"peft.target_modules: .*This model's linear layers: .*query"):
        add_adapters(tiny_bert(), PeftSection(method="lora", target_modules=["q_proj"]), "classification", [])


def test_recipe_checks_peft_keys():
    with pytest.raises(RecipeError, match="`feedforward_modules` only applies to method `ia3`"):
        validate_recipe({"peft": {"method": "lora", "feedforward_modules": ["output.dense"]}})
    with pytest.raises(
        RecipeError, match=r"`feedforward_modules` \['intermediate.dense'\] must also be listed"
    ):
        validate_recipe(
            {
                "peft": {
                    "method": "ia3",
                    "target_modules": ["key"],
                    "feedforward_modules": ["intermediate.dense"],
                }
            }
        )
    with pytest.raises(RecipeError, match="peft.r"):
        validate_recipe({"peft": {"method": "lora", "r": 0}})


def test_lora_trains_only_adapters_and_head(tiny_recipe):
    from transformers import AutoModelForSequenceClassification

    tiny_recipe["peft"] = {"method": "lora", "r": 4, "alpha": 8}
    tiny_recipe["optimizer"]["lr"] = 1e-2
    tiny_recipe["evaluation"]["before_training"] = False  # else the unlearned start stays best
    result = train(validate_recipe(tiny_recipe))
    before = AutoModelForSequenceClassification.from_pretrained(tiny_recipe["model"]["name"]).state_dict()
    after = {k: v.cpu() for k, v in result.trainer.model.state_dict().items()}
    adapters = set(adapter_parameter_names(result.trainer.model))
    for name, value in after.items():
        if name not in adapters:  # every pretrained weight is untouched
            assert torch.equal(
                value, before[name.replace(".base_layer", "").replace(".original_module", "")]
            ), name
    assert any(".lora_" in name for name in adapters)
    assert any("classifier.modules_to_save" in name for name in adapters)
    lora_b = [n for n in adapters if ".lora_B." in n]
    assert any(after[n].abs().sum() > 0 for n in lora_b)  # B starts at zero: training moved it
    assert not torch.equal(after["classifier.modules_to_save.default.weight"], before["classifier.weight"])
    results = result.results
    assert results["trainable_parameters"] == sum(after[n].numel() for n in adapters)
    assert (
        results["final_metrics"]["accuracy"] == results["best"]["value"]
    )  # early stopping restored the best


def test_adapters_in_frozen_layers_stay_put_and_merged_save_is_plain_transformers(tiny_recipe):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    tiny_recipe["peft"] = {"method": "lora", "r": 2}
    tiny_recipe["freeze"] = {"layers": ["0-1"]}
    tiny_recipe["training"].update(epochs=1, precision="fp32")  # a bf16 CPU would autocast in memory
    tiny_recipe["evaluation"]["before_training"] = False  # else the unlearned start stays best
    result = train(validate_recipe(tiny_recipe))
    model = result.trainer.model
    lora = dict((n, p) for n, p in model.named_parameters() if ".lora_" in n)
    trained = [n for n, p in lora.items() if p.requires_grad]
    assert trained and all(".layer.2." in n or ".layer.3." in n for n in trained)
    in_frozen = [p for n, p in lora.items() if ".layer.0." in n or ".layer.1." in n]
    assert in_frozen and all(float(p.abs().sum()) == 0 for p in in_frozen if p.shape[1] == 2)  # B stays 0

    folder = result.run_dir / "model"
    merged = AutoModelForSequenceClassification.from_pretrained(folder)
    assert not any("lora" in name for name in merged.state_dict())
    tokenizer = AutoTokenizer.from_pretrained(folder)
    batch = tokenizer(["great film", "awful film, truly dull"], padding=True, return_tensors="pt")
    model.eval()
    merged.eval()
    with torch.no_grad():
        assert torch.allclose(merged(**batch).logits, model(**batch).logits, atol=1e-5)
    assert pipeline("text-classification", model=str(folder))("great film")[0]["label"] in {"neg", "pos"}
    assert (folder / "README.md").is_file()


def test_adapter_save_is_small_and_loads_back(tiny_recipe):
    from transformers import AutoTokenizer

    tiny_recipe["peft"] = {"method": "ia3", "save": "adapter"}
    tiny_recipe["optimizer"]["lr"] = 1e-2
    tiny_recipe["training"].update(epochs=1, precision="fp32")  # a bf16 CPU would autocast in memory
    result = train(validate_recipe(tiny_recipe))
    folder = result.run_dir / "model"
    assert (folder / "adapter_model.safetensors").is_file() and not (folder / "model.safetensors").exists()
    names = adapter_parameter_names(result.trainer.model)
    assert any(".ia3_" in n for n in names)
    loaded = load_adapted_model(folder)
    assert loaded.config.id2label == {0: "neg", 1: "pos"}
    tokenizer = AutoTokenizer.from_pretrained(folder)
    batch = tokenizer(["great film", "a mess"], padding=True, return_tensors="pt")
    trained = result.trainer.model.eval()
    with torch.no_grad():
        assert torch.allclose(loaded.eval()(**batch).logits, trained(**batch).logits, atol=1e-5)


def test_explain_counts_adapters_as_trainable(tiny_recipe, capsys):
    from finetune.training.explain import explain

    tiny_recipe["peft"] = {"method": "lora", "r": 4}
    tiny_recipe["freeze"] = {"layers": [0]}
    explanation = explain(validate_recipe(tiny_recipe), num_labels=2, plot=None, show_recipe=False)
    rows = {row["block"]: row for row in explanation.rows}
    # per layer: query and value, each A (4 x 32) and B (32 x 4)
    assert rows["layer.0"]["trainable"] == 0
    assert rows["layer.3"]["trainable"] == 2 * (4 * 32 + 32 * 4)
    assert rows["embeddings"]["trainable"] == 0
    assert rows["head"]["trainable"] == 2 * 32 + 2  # the head's trained copy
    assert rows["pooler"]["trainable"] == 32 * 32 + 32  # the pooler trains with the head


def test_peft_and_gradual_unfreezing_do_not_mix():
    with pytest.raises(RecipeError, match="freeze.gradual: peft keeps every pretrained weight frozen"):
        validate_recipe({"peft": {"method": "lora"}, "freeze": {"gradual": {}}})
