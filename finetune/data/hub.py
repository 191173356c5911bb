"""Hub datasets (`data.hub`): the train and validation splits of a Hugging Face hub dataset."""

from __future__ import annotations

from typing import TYPE_CHECKING

from finetune.errors import DataError
from finetune.recipe.data import DataSection

if TYPE_CHECKING:
    from datasets import Dataset


def load_hub(spec: DataSection) -> dict[str, Dataset]:
    """Load train (and validation) splits of a hub dataset; offline, say so clearly."""
    from datasets import load_dataset

    hub = spec.hub
    assert hub is not None
    splits = {"train": hub.train_split}
    if hub.validation_split is not None:
        splits["validation"] = hub.validation_split
    loaded = {}
    for role, split in splits.items():
        try:
            loaded[role] = load_dataset(hub.name, hub.config, split=split, revision=hub.revision)
        except Exception as error:
            raise DataError(
                f"data.hub: could not load '{hub.name}' (config {hub.config!r}, split {split!r}) from the "
                f"Hugging Face hub: {type(error).__name__}: {error}. Hub datasets need internet access "
                f"(and HF_HUB_OFFLINE unset); offline, download the files and point `data.train` at them."
            ) from None
    return loaded
