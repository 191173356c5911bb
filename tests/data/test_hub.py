"""Hub datasets (data/hub.py): offline, the error says they need internet access."""

import pytest

from finetune.data.task_data import load_task_data
from finetune.errors import DataError
from finetune.recipe.data import DataSection


def load(task="classification", seed=0, **data):
    return load_task_data(DataSection(**data), task, seed)


def test_hub_dataset_offline_says_it_needs_internet(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="need internet access"):
        load(hub={"name": "nyu-mll/glue", "config": "sst2"})
