"""Tiny random models of every architecture finetune knows, built from configs (tests of anatomy and freezing)."""

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

TINY = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=3,
    num_attention_heads=2,
    intermediate_size=37,
    max_position_embeddings=64,
    num_labels=2,
)
MODERNBERT_IDS = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=3, sep_token_id=4)

# model_type -> (config overrides, has a pooler, names that must be in the embeddings block)
ARCHITECTURES = {
    "bert": ({}, True, ["bert.embeddings.word_embeddings.weight"]),
    "roberta": ({}, False, ["roberta.embeddings.word_embeddings.weight"]),
    "xlm-roberta": ({}, False, ["roberta.embeddings.word_embeddings.weight"]),
    "camembert": ({}, False, ["roberta.embeddings.word_embeddings.weight"]),
    "electra": ({"embedding_size": 16}, False, ["electra.embeddings_project.weight"]),
    "distilbert": (
        dict(dim=32, n_layers=3, n_heads=2, hidden_dim=37),
        False,
        ["distilbert.embeddings.word_embeddings.weight"],
    ),
    "albert": ({"embedding_size": 16}, True, ["albert.encoder.embedding_hidden_mapping_in.weight"]),
    "deberta-v2": (
        dict(
            relative_attention=True,
            position_buckets=16,
            norm_rel_ebd="layer_norm",
            pos_att_type=["p2c", "c2p"],
            conv_kernel_size=3,  # as in deberta-v2-xlarge/xxlarge: a conv after the first layer
        ),
        True,
        ["deberta.encoder.rel_embeddings.weight", "deberta.encoder.LayerNorm.weight"],
    ),
    "deberta": (
        dict(relative_attention=True, pos_att_type=["p2c", "c2p"]),
        True,
        ["deberta.encoder.rel_embeddings.weight"],
    ),
    "mpnet": ({}, False, ["mpnet.encoder.relative_attention_bias.weight"]),  # its classifier has no pooler
    "modernbert": (
        dict(MODERNBERT_IDS, global_attn_every_n_layers=2),
        True,
        ["model.embeddings.tok_embeddings.weight"],
    ),
}


def tiny_model(model_type: str, **overrides):
    settings = {**TINY, **ARCHITECTURES[model_type][0], **overrides}
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(AutoConfig.for_model(model_type, **settings))
