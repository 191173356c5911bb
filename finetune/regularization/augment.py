"""Text augmentation for small data sets: random word deletion and swap (EDA, Wei & Zou, 2019).

Only the training set is augmented, and anew every epoch: `AugmentedTexts` keeps the raw texts and
tokenizes each batch when the data loader asks for it, after deleting/swapping words with a random
generator seeded by (seed, epoch, example index). So a run is reproducible, every epoch sees other
variants, each process draws the same variant for an example, and nothing augmented is cached on
disk. The validation set is tokenized once, as always, and never passes through here.
"""

from __future__ import annotations

import math
import random
from typing import Any

import torch
from transformers import TrainerCallback

from finetune.recipe.regularization import RegularizationSection


def delete_words(words: list[str], p: float, rng: random.Random) -> list[str]:
    """Drop each word with probability p; a text keeps at least one (random) word."""
    if p <= 0 or len(words) <= 1:
        return words
    kept = [word for word in words if rng.random() >= p]
    return kept or [rng.choice(words)]


def swap_words(words: list[str], p: float, rng: random.Random) -> list[str]:
    """Each position, with probability p, trades its word with a random other position."""
    if p <= 0 or len(words) <= 1:
        return words
    words = list(words)
    for i in range(len(words)):
        if rng.random() < p:
            j = rng.randrange(len(words) - 1)
            j += j >= i  # any position but i
            words[i], words[j] = words[j], words[i]
    return words


def augment_text(text: str, spec: RegularizationSection, rng: random.Random) -> str:
    """Deletion, then swap, of the whitespace-separated words of one text."""
    words = delete_words(text.split(), spec.word_deletion, rng)
    return " ".join(swap_words(words, spec.word_swap, rng))


class AugmentedTexts(torch.utils.data.Dataset):
    """Training examples whose texts are augmented per epoch and tokenized on the fly.

    `raw` has the canonical columns `text`, optional `text_pair`, and `labels` (see data/columns.py);
    tokenization matches `data.tokenize` (truncation, no padding: batches are padded by the collator).
    """

    def __init__(
        self,
        raw: Any,
        tokenizer: Any,
        max_length: int,
        spec: RegularizationSection,
        seed: int,
    ) -> None:
        self.raw = raw
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.spec = spec
        self.seed = seed
        self.epoch = 0
        self.pair = "text_pair" in raw.column_names

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.raw)

    def rng(self, index: int) -> random.Random:
        return random.Random(f"{self.seed}/{self.epoch}/{index}")  # str seeds hash the same everywhere

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        rows = self.raw[list(indices)]
        texts, pairs = [], []
        for position, index in enumerate(indices):
            rng = self.rng(index)
            texts.append(augment_text(rows["text"][position], self.spec, rng))
            if self.pair:
                pairs.append(augment_text(rows["text_pair"][position], self.spec, rng))
        encoded = self.tokenizer(
            texts, pairs if self.pair else None, truncation=True, max_length=self.max_length
        )
        return [
            {**{key: values[i] for key, values in encoded.items()}, "labels": rows["labels"][i]}
            for i in range(len(indices))
        ]

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self.__getitems__([index])[0]


class AugmentationEpoch(TrainerCallback):
    """Tell the augmented training set which epoch starts (before its data loader iterates)."""

    def __init__(self, dataset: AugmentedTexts) -> None:
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(math.floor((state.epoch or 0.0) + 1e-6))
