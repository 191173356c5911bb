"""Frozen-prefix cache: same outputs, same training, dropped when the prefix changes."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_bert

from finetune.errors import FinetuneError, RecipeError
from finetune.model.prefix_cache import ActivationStore, install_prefix_cache


def freeze_prefix(model, layers: int) -> None:
    """Freeze the embeddings and the bottom `layers` layers of a tiny BERT."""
    prefixes = ("bert.embeddings.", *(f"bert.encoder.layer.{i}." for i in range(layers)))
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(not name.startswith(prefixes))


def batch(rows: list[list[int]], pair_from: int | None = None) -> dict[str, torch.Tensor]:
    """Right-padded input ids, mask and token types (second segment from `pair_from`)."""
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    types = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
        if pair_from is not None and len(row) > pair_from:
            types[i, pair_from : len(row)] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


ROWS = [[101, 7, 8, 9, 102], [101, 5, 102], [101, 11, 12, 13, 14, 15, 16, 102], [101, 42, 43, 102]]


def logits(model, inputs):
    with torch.no_grad():
        return model(**inputs).logits


@pytest.fixture
def model():
    m = tiny_bert()
    freeze_prefix(m, 2)
    return m.eval()


def test_outputs_equal_with_and_without_cache(model):
    inputs = batch(ROWS, pair_from=3)
    reference = logits(model, inputs)
    cache = install_prefix_cache(model, memory_mb=16, verbose=False)
    assert (cache.active, cache.depth) == (True, 2)
    first, second = logits(model, inputs), logits(model, inputs)
    torch.testing.assert_close(first, reference, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(second, reference, rtol=1e-5, atol=1e-6)
    assert (cache.misses, cache.hits) == (4, 4)
    cache.remove()
    torch.testing.assert_close(logits(model, inputs), reference)


def test_cached_examples_serve_any_batch_and_padding(model):
    alone = [logits(model, batch([row])) for row in ROWS]
    install_prefix_cache(model, memory_mb=16, verbose=False)
    logits(model, batch(ROWS[:2]))  # fill two, then mix cached and new rows at another width
    mixed = logits(model, batch([ROWS[2], ROWS[0], ROWS[3], ROWS[1]]))
    for position, row in enumerate([2, 0, 3, 1]):
        torch.testing.assert_close(mixed[position], alone[row][0], rtol=1e-5, atol=1e-6)


def test_unfreezing_a_cached_layer_drops_the_cache(model):
    inputs = batch(ROWS)
    cache = install_prefix_cache(model, memory_mb=16, verbose=False)
    logits(model, inputs)
    assert len(cache.store) == 4
    model.bert.encoder.layer[1].output.dense.weight.requires_grad_(True)  # as gradual unfreezing would
    with torch.no_grad():
        model.bert.encoder.layer[1].output.dense.weight.mul_(1.5)  # and then train it
    expected = logits_without_cache(model, inputs)
    torch.testing.assert_close(logits(model, inputs), expected, rtol=1e-5, atol=1e-6)
    assert (cache.invalidations, cache.depth, len(cache.store)) == (1, 1, 4)


def logits_without_cache(model, inputs):
    """Reference logits with a temporarily removed cache's patches bypassed."""
    fresh = tiny_bert()
    fresh.load_state_dict(model.state_dict())
    return logits(fresh.eval(), inputs)


def test_changed_frozen_weights_drop_the_cache(model):
    inputs = batch(ROWS)
    cache = install_prefix_cache(model, memory_mb=16, verbose=False)
    logits(model, inputs)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["bert.encoder.layer.0.attention.self.query.weight"] += 0.5
    model.load_state_dict(state)  # e.g. restoring other weights: copies in place
    torch.testing.assert_close(
        logits(model, inputs), logits_without_cache(model, inputs), rtol=1e-5, atol=1e-6
    )
    assert cache.invalidations == 1


def test_weights_written_through_data_drop_the_cache(model):
    """EMA/SWA callbacks write `p.data.copy_(...)`: no version bump, same storage, new values."""
    inputs = batch(ROWS)
    cache = install_prefix_cache(model, memory_mb=16, verbose=False)
    logits(model, inputs)
    weight = model.bert.encoder.layer[1].attention.output.dense.weight
    weight.data.copy_(torch.randn_like(weight))
    expected = logits_without_cache(model, inputs)
    torch.testing.assert_close(logits(model, inputs), expected, rtol=1e-5, atol=1e-6)
    assert (cache.invalidations, cache.misses) == (1, 8)


def test_nan_in_frozen_weights_does_not_drop_the_cache_every_pass(model):
    with torch.no_grad():
        model.bert.encoder.layer[0].output.dense.bias[3] = float("nan")
    cache = install_prefix_cache(model, memory_mb=16, verbose=False)
    logits(model, batch(ROWS))
    logits(model, batch(ROWS))
    assert (cache.invalidations, cache.hits, cache.misses) == (0, 4, 4)


def test_prefix_runs_without_dropout_while_the_model_trains():
    m = tiny_bert(hidden_dropout_prob=0.5, attention_probs_dropout_prob=0.5)
    freeze_prefix(m, 4)  # the whole encoder: only pooler and head train
    inputs = batch(ROWS)
    expected = logits(m.eval(), inputs)
    install_prefix_cache(m, memory_mb=16, verbose=False)
    m.train()
    m.bert.pooler.train()
    m.dropout.p = 0.0  # the head's own dropout off: any remaining noise would come from the prefix
    torch.testing.assert_close(logits(m, inputs), expected, rtol=1e-5, atol=1e-6)
    assert all(layer.training for layer in m.bert.encoder.layer)  # modes restored after computing


def test_left_padding_runs_the_whole_model(model):
    inputs = batch(ROWS)
    flipped = {k: v.flip(1) for k, v in inputs.items()}  # pads first
    reference = logits(model, flipped)
    cache = install_prefix_cache(model, memory_mb=16, verbose=False)
    torch.testing.assert_close(logits(model, flipped), reference)
    assert cache.hits == cache.misses == 0


def test_store_spills_to_disk_and_reads_back(tmp_path):
    store = ActivationStore(memory_bytes=20, folder=tmp_path)
    small, large = torch.arange(4.0), torch.randn(3, 8)
    half = torch.randn(5, 2).to(torch.bfloat16)
    for key, tensor in ((b"a", small), (b"b", large), (b"c", half)):
        store.put(key, tensor)
    assert set(store.memory) == {b"a"} and set(store.disk) == {b"b", b"c"}
    torch.testing.assert_close(store.get(b"b"), large)
    torch.testing.assert_close(store.get(b"c"), half)
    assert store.get(b"missing") is None and len(store) == 3
    store.clear()
    assert len(store) == 0 and store.get(b"b") is None


def test_cache_on_disk_gives_the_same_outputs(model):
    inputs = batch(ROWS, pair_from=2)
    reference = logits(model, inputs)
    cache = install_prefix_cache(model, memory_mb=0, verbose=False)
    logits(model, inputs)
    torch.testing.assert_close(logits(model, inputs), reference, rtol=1e-5, atol=1e-6)
    assert len(cache.store.disk) == 4 and cache.hits == 4


def test_unsupported_architecture_is_a_clear_error():
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    config = DistilBertConfig(vocab_size=100, dim=16, n_layers=2, n_heads=2, hidden_dim=32)
    m = DistilBertForSequenceClassification(config)
    for p in m.distilbert.embeddings.parameters():
        p.requires_grad_(False)
    with pytest.raises(FinetuneError, match=r"training\.prefix_cache: not available for 'distilbert'"):
        install_prefix_cache(m, memory_mb=16)


def test_trainable_embeddings_are_a_clear_error():
    with pytest.raises(FinetuneError, match=r"training\.prefix_cache: the embeddings are not frozen"):
        install_prefix_cache(tiny_bert(), memory_mb=16)


def test_recipe_needs_eval_mode_and_no_compile(tiny_recipe):
    from finetune.recipe import validate_recipe

    tiny_recipe["training"]["prefix_cache"] = True
    tiny_recipe["training"]["compile"] = True
    with pytest.raises(RecipeError) as error:
        validate_recipe(tiny_recipe)
    assert "training.prefix_cache: needs freeze.eval_mode: true" in str(error.value)
    assert "training.prefix_cache: cannot be combined with training.compile" in str(error.value)


# ---- training end to end ------------------------------------------------------------------------


class LastStepWeights:
    """Keeps the weights after the last optimizer step (before early stopping restores the best)."""

    def __init__(self):
        from transformers import TrainerCallback

        class Callback(TrainerCallback):
            def on_step_end(inner, args, state, control, model=None, **kwargs):
                self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

        self.callback = Callback()
        self.state = None


def train_weights(recipe_dict, folder, cache: bool):
    """Train the recipe; return the weights after its last step, its training losses and the result."""
    from finetune.recipe import validate_recipe
    from finetune.training.run import train

    recipe_dict = {**recipe_dict, "output": {"dir": str(folder), "save_model": False, "plots": False}}
    recipe_dict["training"] = {**recipe_dict["training"], "prefix_cache": cache}
    last = LastStepWeights()
    result = train(validate_recipe(recipe_dict), callbacks=[last.callback])
    losses = [log["loss"] for log in result.trainer.state.log_history if "loss" in log]
    return last.state, losses, result


def assert_same_weights(first, second):
    for name, value in first.items():
        torch.testing.assert_close(second[name], value, rtol=1e-4, atol=1e-5, msg=name)


def test_training_with_the_cache_matches_training_without(tiny_recipe, tmp_path):
    tiny_recipe["freeze"] = {"embeddings": True, "layers": ["0-1"], "eval_mode": True}
    tiny_recipe["training"]["epochs"] = 3
    plain, plain_losses, _ = train_weights(tiny_recipe, tmp_path / "plain", cache=False)
    cached, cached_losses, result = train_weights(tiny_recipe, tmp_path / "cached", cache=True)
    cache = result.trainer.prefix_cache
    assert cache.depth == 2 and cache.hits > 2 * cache.misses  # epochs 2 and 3 (and evaluations) hit
    recorded = result.results["prefix_cache"]
    assert recorded["cached"] == "caching embeddings + layers 0-1" and recorded["hits"] == cache.hits
    # keyed by content: the 48 training rows repeat 12 texts, and validation holds the same 12
    assert recorded["examples"] == 12 and recorded["disk_mb"] == 0
    assert_same_weights(plain, cached)
    assert cached_losses == pytest.approx(plain_losses, rel=1e-4) and len(plain_losses) == 18


def test_gradual_unfreezing_drops_the_cache_and_still_matches(tiny_recipe, tmp_path):
    tiny_recipe["freeze"] = {
        "embeddings": True,
        "layers": [0],
        "eval_mode": True,
        "gradual": {"every": 1, "unit": "epoch", "start_layers": 1},
    }
    tiny_recipe["training"]["epochs"] = 3
    plain, plain_losses, _ = train_weights(tiny_recipe, tmp_path / "plain", cache=False)
    cached, cached_losses, result = train_weights(tiny_recipe, tmp_path / "cached", cache=True)
    cache = result.trainer.prefix_cache
    # layers 1-2 wait and are cached at first; layer 2 unfreezes, then layer 1: the cache shrinks to layer 0
    assert cache.depth == 1 and cache.invalidations >= 2
    assert_same_weights(plain, cached)
    assert cached_losses == pytest.approx(plain_losses, rel=1e-4) and len(plain_losses) == 18
