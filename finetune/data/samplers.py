"""Batching: which examples share a batch, so that dynamic padding pads as little as possible.

Batches are padded to their longest example (`DataCollatorWithPadding`), so a batch of one long
and 31 short sentences costs as much as 32 long ones. On SST-2 random batches are two-thirds
padding; grouping examples of similar length removes almost all of it.

- `LengthGroupedSampler` (training): shuffle, cut the shuffled data into pools of
  `pool_batches` batches, sort each pool by length, cut it into batches and shuffle the
  batches. Batches stay random in composition and order; only their lengths are homogeneous.
  This is the "bucket iterator" of torchtext and fairseq, and what transformers'
  `LengthGroupedSampler` does, except that lengths come from the `length` column computed at
  tokenization (transformers removes that column before it builds its sampler, so it re-reads
  every example to measure it), batches are shuffled across pools, and the pools are twice as
  large (less padding).
- `BalancedSampler` (`training.sampler: balanced`): the same batching over a class-balanced draw
  with replacement, for imbalanced classification.
- `LengthSortedSampler` (evaluation): every example once, longest first, so evaluation pads
  least; `restore_order` puts predictions back in the data set's order.

Both read lengths once, from a list, and are seeded: the same seed and epoch give the same
batches, on any number of processes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from finetune.data.columns import column_values

LENGTH_COLUMN = "length"  # written by `data.tokenize`


def dataset_lengths(dataset: Any) -> list[int] | None:
    """Token counts per example from the `length` column, or None when the data set has none."""
    names = getattr(dataset, "column_names", None)
    if not names or LENGTH_COLUMN not in names:
        return None
    return [int(n) for n in column_values(dataset, LENGTH_COLUMN)]


class LengthGroupedSampler(Sampler[int]):
    """Random batches of similar length: shuffled pools, sorted within a pool, batches shuffled.

    Yields example indices; consecutive runs of `batch_size` indices are one batch, so the last,
    possibly smaller batch always comes last. The longest batch comes first, so an out-of-memory
    error shows at the first step rather than hours in.
    """

    def __init__(
        self, lengths: Sequence[int], batch_size: int, seed: int = 0, pool_batches: int = 100
    ) -> None:
        if batch_size < 1 or pool_batches < 1:
            raise ValueError("batch_size and pool_batches must be positive")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size = batch_size
        self.pool_size = batch_size * pool_batches
        self.seed = seed
        self.epoch: int | None = None
        self._iterations = 0

    def __len__(self) -> int:
        return len(self.lengths)

    def set_epoch(self, epoch: int) -> None:
        """Called by the Trainer (through Accelerate) at the start of every epoch."""
        self.epoch = epoch

    def batches(self, epoch: int) -> list[np.ndarray]:
        """The batches of one epoch, in order (the last one may be smaller)."""
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, epoch])
        order = self.draw(rng)
        full, rest = [], []
        for start in range(0, len(order), self.pool_size):
            pool = order[start : start + self.pool_size]
            # stable sort on the shuffled pool: equal lengths stay in random order
            pool = pool[np.argsort(-self.lengths[pool], kind="stable")]
            for first in range(0, len(pool), self.batch_size):
                batch = pool[first : first + self.batch_size]
                (full if len(batch) == self.batch_size else rest).append(batch)
        if not full:
            return rest
        longest = max(range(len(full)), key=lambda i: self.lengths[full[i]].max())
        others = [full[i] for i in rng.permutation(len(full)) if i != longest]
        return [full[longest], *others, *rest]

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """The examples of one epoch, in random order: each once."""
        return rng.permutation(len(self.lengths))

    def __iter__(self) -> Iterator[int]:
        # Without set_epoch (a plain DataLoader), every pass still draws new batches.
        epoch = self.epoch if self.epoch is not None else self._iterations
        self._iterations += 1
        for batch in self.batches(epoch):
            yield from batch.tolist()


class BalancedSampler(LengthGroupedSampler):
    """`training.sampler: balanced`: every epoch draws as many examples as the data has, with
    replacement, each class equally likely (a class, then one of its examples), then batches them
    like `LengthGroupedSampler` (all lengths equal when the data has none: random batches).

    Rare-class examples repeat within an epoch and frequent ones are left out, a new draw every
    epoch; the draw depends only on (seed, epoch), so every process and a resumed run agree.
    """

    def __init__(
        self,
        labels: Sequence[int],
        batch_size: int,
        seed: int = 0,
        lengths: Sequence[int] | None = None,
        pool_batches: int = 100,
    ) -> None:
        labels = np.asarray(labels, dtype=np.int64)
        super().__init__(
            np.zeros(len(labels)) if lengths is None else lengths, batch_size, seed, pool_batches
        )
        members = [np.flatnonzero(labels == c) for c in np.unique(labels)]  # classes present only
        self.sizes = np.array([len(m) for m in members])
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])
        self.by_class = np.concatenate(members)

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        classes = rng.integers(len(self.sizes), size=len(self.lengths))
        within = (rng.random(len(self.lengths)) * self.sizes[classes]).astype(np.int64)
        return self.by_class[self.starts[classes] + within]


class LengthSortedSampler(Sampler[int]):
    """Every example exactly once, longest first (ties in data-set order): evaluation pads least."""

    def __init__(self, lengths: Sequence[int]) -> None:
        self.order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self) -> Iterator[int]:
        return iter(self.order.tolist())


def restore_order(values: Any, order: np.ndarray) -> Any:
    """Put predictions made in `order` (position -> example index) back in data-set order.

    Arrays whose first dimension is the number of examples are permuted; tuples, lists and dicts
    of them are walked; anything else (None, scalars) is returned unchanged.
    """
    if values is None:
        return None
    if isinstance(values, dict):
        return {key: restore_order(value, order) for key, value in values.items()}
    if isinstance(values, (tuple, list)):
        return type(values)(restore_order(value, order) for value in values)
    if hasattr(values, "shape") and len(values.shape) > 0 and values.shape[0] == len(order):
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return values[inverse]
    return values


def find_sampler(dataloader: Any) -> Sampler | None:
    """The index sampler under a (possibly Accelerate-wrapped) DataLoader, if it has one."""
    for path in (
        "sampler",
        "batch_sampler.sampler",
        "batch_sampler.batch_sampler.sampler",
        "base_dataloader.sampler",
    ):
        node = dataloader
        for attribute in path.split("."):
            node = getattr(node, attribute, None)
        if isinstance(node, (LengthSortedSampler, LengthGroupedSampler)):  # BalancedSampler included
            return node
    return None


def padding_efficiency(lengths: Sequence[int], batches: list[Sequence[int]]) -> float:
    """Real tokens / padded tokens over a list of batches (1.0 = no padding)."""
    lengths = np.asarray(lengths)
    padded = sum(int(lengths[np.asarray(batch)].max()) * len(batch) for batch in batches if len(batch))
    return float(lengths[np.concatenate([np.asarray(b) for b in batches])].sum()) / padded if padded else 1.0
