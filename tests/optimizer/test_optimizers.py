"""Optimizers: every built-in name and dotted classes build with the recipe's settings; keys and
kwargs the optimizer does not take are errors that name them."""

import pytest
import torch
from conftest import tiny_bert
from transformers.optimization import Adafactor

from finetune.errors import FinetuneError, RecipeError
from finetune.optimizer.param_groups import build_optimizer, param_groups
from finetune.recipe import load_recipe
from finetune.recipe.optimizer import OptimizerSection


def built(**settings):
    spec = OptimizerSection(**{"lr": 2e-5, **settings})
    model = tiny_bert()
    return model, build_optimizer(param_groups(model, spec), spec)


def takes_a_step(model, optimizer):
    """One optimizer step on a real loss changes the trainable weights."""
    before = model.classifier.weight.detach().clone()
    inputs = torch.randint(0, 100, (4, 8))
    loss = model(input_ids=inputs, labels=torch.tensor([0, 1, 0, 1])).loss
    loss.backward()
    optimizer.step()
    return not torch.equal(before, model.classifier.weight)


@pytest.mark.parametrize(
    ("name", "cls", "expected"),
    [
        ("adamw", torch.optim.AdamW, {"betas": (0.8, 0.99), "eps": 1e-6, "decoupled_weight_decay": True}),
        ("adam", torch.optim.Adam, {"betas": (0.8, 0.99), "eps": 1e-6, "decoupled_weight_decay": False}),
        ("rmsprop", torch.optim.RMSprop, {"eps": 1e-6, "momentum": 0.0}),
        ("adagrad", torch.optim.Adagrad, {"eps": 1e-6}),
    ],
)
def test_builtin_optimizers_get_the_recipe_settings(name, cls, expected):
    betas = {"betas": (0.8, 0.99)} if "betas" in expected else {}
    model, optimizer = built(name=name, lr=3e-4, eps=1e-6, weight_decay=0.05, **betas)
    assert type(optimizer) is cls
    decay, no_decay = optimizer.param_groups
    assert decay["lr"] == 3e-4 and decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    for key, value in expected.items():
        assert decay[key] == value, key
    assert takes_a_step(model, optimizer)


def test_adamw_uses_the_fused_kernel_on_one_device():
    _, optimizer = built()
    assert optimizer.param_groups[0]["fused"] is True


def test_sgd_has_momentum_by_default_and_nesterov_on_request():
    model, optimizer = built(name="sgd", lr=0.1, nesterov=True)
    group = optimizer.param_groups[0]
    assert type(optimizer) is torch.optim.SGD
    assert group["momentum"] == 0.9 and group["nesterov"] is True
    assert takes_a_step(model, optimizer)
    _, plain = built(name="sgd", momentum=0.0)
    assert plain.param_groups[0]["momentum"] == 0.0


def test_adafactor_follows_the_schedule_lr():
    model, optimizer = built(name="adafactor", lr=1e-3)
    group = optimizer.param_groups[0]
    assert type(optimizer) is Adafactor
    assert group["lr"] == 1e-3 and group["relative_step"] is False and group["scale_parameter"] is False
    assert takes_a_step(model, optimizer)


def test_dotted_class_with_kwargs():
    model, optimizer = built(
        name="torch.optim.NAdam", kwargs={"momentum_decay": 0.01, "decoupled_weight_decay": True}
    )
    group = optimizer.param_groups[0]
    assert type(optimizer) is torch.optim.NAdam
    assert group["momentum_decay"] == 0.01 and group["decoupled_weight_decay"] is True
    assert group["betas"] == (0.9, 0.999) and group["eps"] == 1e-8  # NAdam's own defaults
    assert takes_a_step(model, optimizer)
    _, tuned = built(name="torch.optim.NAdam", betas=(0.8, 0.9), eps=1e-6)
    assert tuned.param_groups[0]["betas"] == (0.8, 0.9) and tuned.param_groups[0]["eps"] == 1e-6


def test_unset_keys_keep_the_optimizers_own_defaults():
    """eps/betas the recipe does not set are not passed: Adagrad keeps its 1e-10, and
    torch.optim.Adafactor, whose eps is a pair, can be built at all."""
    _, adagrad = built(name="adagrad")
    assert adagrad.param_groups[0]["eps"] == 1e-10
    _, adamw = built()
    assert adamw.param_groups[0]["eps"] == 1e-8 and adamw.param_groups[0]["betas"] == (0.9, 0.999)
    model, adafactor = built(name="torch.optim.Adafactor", lr=1e-2)
    assert type(adafactor) is torch.optim.Adafactor and adafactor.param_groups[0]["eps"] == (None, 1e-3)
    assert takes_a_step(model, adafactor)


def test_kwargs_for_a_builtin():
    _, optimizer = built(name="adam", kwargs={"amsgrad": True})
    assert optimizer.param_groups[0]["amsgrad"] is True


def test_unknown_kwarg_is_an_error_naming_it():
    with pytest.raises(RecipeError) as error:
        load_recipe("base", ["optimizer.name=torch.optim.NAdam", "optimizer.kwargs={momentum_decai: 0.01}"])
    message = str(error.value)
    assert "optimizer.kwargs: torch.optim.NAdam has no argument 'momentum_decai'" in message
    assert "did you mean 'momentum_decay'?" in message


def test_kwargs_may_not_set_what_recipe_keys_set():
    with pytest.raises(RecipeError, match="'lr': set optimizer.lr instead"):
        load_recipe("base", ["optimizer.kwargs={lr: 0.1}"])


def test_key_the_optimizer_does_not_take_is_an_error():
    with pytest.raises(RecipeError, match=r"optimizer.betas: sgd takes no `betas` \(only adamw, adam do\)"):
        load_recipe("base", ["optimizer.name=sgd", "optimizer.betas=[0.8, 0.9]"])
    with pytest.raises(RecipeError, match="optimizer.momentum: adamw takes no `momentum`"):
        load_recipe("base", ["optimizer.momentum=0.9"])
    with pytest.raises(RecipeError, match="optimizer.weight_decay: torch.optim.LBFGS takes no weight decay"):
        load_recipe("base", ["optimizer.name=torch.optim.LBFGS"])


def test_unknown_names_and_classes():
    with pytest.raises(RecipeError, match="unknown optimizer 'adamx': did you mean 'adam'?"):
        load_recipe("base", ["optimizer.name=adamx"])
    with pytest.raises(
        RecipeError, match="module 'torch.optim' has no class 'Nadam'; did you mean 'torch.optim.NAdam'"
    ):
        load_recipe("base", ["optimizer.name=torch.optim.Nadam"])
    with pytest.raises(RecipeError, match="'torch.nn.Linear' is not a torch.optim.Optimizer class"):
        load_recipe("base", ["optimizer.name=torch.nn.Linear"])
    with pytest.raises(RecipeError, match="cannot import module 'no_such_package'"):
        load_recipe("base", ["optimizer.name=no_such_package.Opt"])


def test_settings_the_class_rejects_name_the_section():
    spec = OptimizerSection(name="sgd", nesterov=True, kwargs={"dampening": 0.5})
    with pytest.raises(FinetuneError, match="optimizer.kwargs: torch.optim.SGD rejected its settings"):
        build_optimizer(param_groups(tiny_bert(), spec), spec)
