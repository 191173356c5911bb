"""RecipeTrainer against the installed transformers: the private methods it overrides still exist with
the arguments it relies on, and the version is one the project declares it supports."""

import inspect
import re

import pytest
import transformers
from conftest import REPO
from transformers import Trainer

from finetune.training.trainer import RecipeTrainer

# private Trainer method -> the leading parameters RecipeTrainer's override receives or passes on
PRIVATE_HOOKS = {
    "_get_train_sampler": ["self", "train_dataset"],
    "_get_eval_sampler": ["self", "eval_dataset"],
    "_save_checkpoint": ["self", "model", "trial"],
    "_load_optimizer_and_scheduler": ["self", "checkpoint"],
    "_maybe_log_save_evaluate": ["self", "tr_loss", "grad_norm", "model", "trial", "epoch"],
}


@pytest.mark.parametrize("name", sorted(PRIVATE_HOOKS))
def test_each_overridden_private_method_keeps_its_signature(name):
    assert name in vars(RecipeTrainer), f"RecipeTrainer no longer overrides {name}: update PRIVATE_HOOKS"
    parameters = list(inspect.signature(getattr(Trainer, name)).parameters)
    assert parameters[: len(PRIVATE_HOOKS[name])] == PRIVATE_HOOKS[name]


def test_no_other_private_trainer_method_is_overridden():
    private = {n for n in vars(RecipeTrainer) if n.startswith("_") and not n.startswith("__")}
    overridden = {n for n in private if hasattr(Trainer, n)}
    assert overridden == set(PRIVATE_HOOKS)


def test_the_installed_transformers_is_inside_the_declared_bounds():
    pyproject = (REPO / "pyproject.toml").read_text()
    low, high = re.search(r'"transformers>=([\d.]+),<([\d.]+)"', pyproject).groups()
    version = tuple(int(x) for x in re.match(r"(\d+)\.(\d+)", transformers.__version__).groups())
    assert tuple(int(x) for x in low.split(".")[:2]) <= version < tuple(int(x) for x in high.split(".")[:2])


def test_the_trainer_still_reads_the_private_attribute_create_scheduler_sets():
    assert "self._created_lr_scheduler" in inspect.getsource(Trainer)
