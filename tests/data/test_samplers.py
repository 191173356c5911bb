"""Length-grouped training batches, longest-first evaluation, predictions back in data order."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from finetune.data import samplers
from finetune.data.samplers import (
    LengthGroupedSampler,
    LengthSortedSampler,
    find_sampler,
    padding_efficiency,
    restore_order,
)

# A long-tailed length distribution like SST-2's (most sentences short, a few long).
LENGTHS = np.random.default_rng(0).geometric(0.08, size=1000).clip(3, 64).tolist()


def chunks(indices: list[int], size: int) -> list[list[int]]:
    return [indices[i : i + size] for i in range(0, len(indices), size)]


def test_every_example_once_per_epoch_and_smaller_last_batch_last():
    sampler = LengthGroupedSampler(LENGTHS, batch_size=32, seed=1)
    order = list(sampler)
    assert sorted(order) == list(range(len(LENGTHS)))
    sizes = [len(b) for b in sampler.batches(0)]
    assert sizes[:-1] == [32] * (len(sizes) - 1) and sizes[-1] == len(LENGTHS) % 32


def test_grouping_removes_most_padding():
    sampler = LengthGroupedSampler(LENGTHS, batch_size=32, seed=1)
    grouped = padding_efficiency(LENGTHS, chunks(list(sampler), 32))
    shuffled = padding_efficiency(LENGTHS, chunks(np.random.default_rng(1).permutation(1000).tolist(), 32))
    assert shuffled < 0.5 < 0.9 < grouped


def test_longest_batch_first():
    batches = LengthGroupedSampler(LENGTHS, batch_size=32, seed=3).batches(0)
    assert max(LENGTHS[i] for i in batches[0]) == max(LENGTHS)


def test_same_seed_and_epoch_same_batches_other_epochs_differ():
    first, second = LengthGroupedSampler(LENGTHS, 32, seed=7), LengthGroupedSampler(LENGTHS, 32, seed=7)
    first.set_epoch(2)
    second.set_epoch(2)
    assert list(first) == list(second)
    second.set_epoch(3)
    assert list(first) != list(second)
    assert list(LengthGroupedSampler(LENGTHS, 32, seed=8)) != list(LengthGroupedSampler(LENGTHS, 32, seed=7))


def test_without_set_epoch_each_pass_draws_new_batches():
    sampler = LengthGroupedSampler(LENGTHS, 32, seed=0)
    assert list(sampler) != list(sampler)


def test_batches_are_shuffled_not_sorted():
    batches = LengthGroupedSampler(LENGTHS, batch_size=32, seed=0).batches(0)
    longest = [max(LENGTHS[i] for i in b) for b in batches[1:-1]]
    assert longest != sorted(longest) and longest != sorted(longest, reverse=True)


def test_sorted_sampler_longest_first_ties_in_data_order():
    sampler = LengthSortedSampler([3, 9, 3, 12, 9])
    assert list(sampler) == [3, 1, 4, 0, 2]


def test_restore_order_inverts_the_sampler_order():
    lengths = [5, 1, 7, 3]
    order = LengthSortedSampler(lengths).order
    data = np.arange(4) * 10
    predicted = data[order]  # what a loop over the sorted loader produces
    logits = np.stack([predicted, -predicted], axis=1)
    assert restore_order(predicted, order).tolist() == data.tolist()
    restored = restore_order((logits, None, {"x": predicted}), order)
    assert restored[0][:, 0].tolist() == data.tolist() and restored[1] is None
    assert restored[2]["x"].tolist() == data.tolist()


def test_find_sampler_in_a_dataloader():
    sampler = LengthSortedSampler([1, 2, 3])
    assert find_sampler(DataLoader(list(range(3)), sampler=sampler, batch_size=2)) is sampler
    assert find_sampler(DataLoader(list(range(3)), batch_size=2)) is None


def test_dataset_lengths_reads_the_length_column():
    from datasets import Dataset

    assert samplers.dataset_lengths(Dataset.from_dict({"length": [3, 1]})) == [3, 1]
    assert samplers.dataset_lengths(Dataset.from_dict({"input_ids": [[1]]})) is None
    assert samplers.dataset_lengths([1, 2]) is None


# ---- inside the RecipeTrainer --------------------------------------------------------------------


@pytest.fixture
def varied_recipe(tiny_recipe, tmp_path):
    """The tiny recipe on texts of very different lengths (so sorting changes the order)."""
    from conftest import write_rows

    words = ["good", "bad", "fine", "dull", "great", "awful"]
    rows = [
        {"text": " ".join(words[(i + j) % 6] for j in range(1 + (7 * i) % 13)), "label": i % 2}
        for i in range(40)
    ]
    tiny_recipe["data"]["train"] = str(write_rows(tmp_path / "varied-train.csv", rows))
    tiny_recipe["data"]["validation"] = str(write_rows(tmp_path / "varied-dev.csv", rows[:23]))
    tiny_recipe["evaluation"]["batch_size"] = 4
    return tiny_recipe


def build(recipe_dict, tmp_path):
    from finetune.recipe import validate_recipe
    from finetune.training.run import prepare

    recipe = validate_recipe(recipe_dict)
    run_dir = tmp_path / "prepared"
    run_dir.mkdir(parents=True, exist_ok=True)
    return prepare(recipe, run_dir)


def test_trainer_uses_the_tokenized_lengths(varied_recipe, tmp_path):
    run = build(varied_recipe, tmp_path)
    trainer = run.trainer
    loader = trainer.get_train_dataloader()
    sampler = find_sampler(loader)
    assert isinstance(sampler, LengthGroupedSampler)
    assert sampler.lengths.tolist() == trainer.train_dataset["length"]
    for batch in loader:  # dynamic padding: each batch is as long as its longest example
        assert batch["attention_mask"][:, -1].any()


def test_group_by_length_off_gives_random_batches(varied_recipe, tmp_path):
    varied_recipe["training"]["group_by_length"] = False
    trainer = build(varied_recipe, tmp_path).trainer
    assert find_sampler(trainer.get_train_dataloader()) is None
    assert find_sampler(trainer.get_eval_dataloader()) is None


def test_evaluation_is_sorted_and_predictions_come_back_in_data_order(varied_recipe, tmp_path):
    run = build(varied_recipe, tmp_path)
    trainer, eval_set = run.trainer, run.trainer.eval_dataset
    loader = trainer.get_eval_dataloader()
    assert isinstance(find_sampler(loader), LengthSortedSampler)
    widths = [batch["input_ids"].shape[1] for batch in loader]
    assert widths == sorted(widths, reverse=True)

    predicted = trainer.predict(eval_set)
    model = trainer.model.eval()
    with torch.no_grad():  # one example at a time, in data order: no sorting, no padding
        expected = [
            model(
                input_ids=torch.tensor([row["input_ids"]]),
                attention_mask=torch.tensor([row["attention_mask"]]),
            )
            .logits[0]
            .numpy()
            for row in eval_set
        ]
    np.testing.assert_allclose(predicted.predictions, np.stack(expected), atol=1e-5)
    assert predicted.label_ids.tolist() == eval_set["labels"]


def test_metrics_do_not_depend_on_evaluation_order(varied_recipe, tmp_path):
    sorted_metrics = build(varied_recipe, tmp_path).trainer.evaluate()
    varied_recipe["training"]["group_by_length"] = False
    plain_metrics = build(varied_recipe, tmp_path / "plain").trainer.evaluate()
    for key in ("eval_loss", "eval_accuracy"):
        assert sorted_metrics[key] == pytest.approx(plain_metrics[key], abs=1e-5)


def test_balanced_sampler_draws_classes_about_equally_and_is_seeded_by_epoch():
    from finetune.data.samplers import BalancedSampler

    labels = [0] * 900 + [1] * 100
    sampler = BalancedSampler(labels, batch_size=32, seed=3, lengths=LENGTHS)
    sampler.set_epoch(0)
    first = list(sampler)
    assert len(first) == len(labels)
    share = np.mean(np.asarray(labels)[first])
    assert 0.45 < share < 0.55  # 10% of the data, half of the draws
    assert len(set(first) & set(range(900, 1000))) > 90  # most rare examples drawn, many repeated
    again = BalancedSampler(labels, batch_size=32, seed=3, lengths=LENGTHS)
    again.set_epoch(0)
    assert list(again) == first
    sampler.set_epoch(1)
    assert list(sampler) != first
    batches = chunks(first, 32)[:-1]
    assert padding_efficiency(LENGTHS, batches) > 0.8  # still length-grouped


def test_balanced_sampler_without_lengths_draws_random_batches():
    from finetune.data.samplers import BalancedSampler

    labels = [2] * 50 + [0] * 5 + [1] * 45
    drawn = list(BalancedSampler(labels, batch_size=8, seed=0))
    counts = np.bincount(np.asarray(labels)[drawn], minlength=3)
    assert counts.sum() == 100 and counts.min() > 20
