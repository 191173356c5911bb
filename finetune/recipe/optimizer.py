"""`optimizer:` the optimizer and its hyper-parameters.

`name` is a built-in short name or the dotted path of any `torch.optim.Optimizer` class. A key that
the chosen optimizer does not take must keep its default (an error names it), and `kwargs` are
checked against the class's signature, so a typo never silently falls back to a default.
"""

import difflib
import importlib
import inspect
from typing import Annotated, Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from .base import Auto, Section

# Short names -> classes (imported only when a recipe is built or its kwargs are checked).
BUILTIN_OPTIMIZERS: dict[str, str] = {
    "adamw": "torch.optim.AdamW",
    "adam": "torch.optim.Adam",
    "sgd": "torch.optim.SGD",
    "rmsprop": "torch.optim.RMSprop",
    "adagrad": "torch.optim.Adagrad",
    "adafactor": "transformers.optimization.Adafactor",
}
# Recipe keys -> the built-ins that take them (a dotted class takes those its signature has).
KEY_USERS: dict[str, tuple[str, ...]] = {
    "betas": ("adamw", "adam"),
    "eps": ("adamw", "adam", "rmsprop", "adagrad"),
    "momentum": ("sgd", "rmsprop"),
    "nesterov": ("sgd",),
}
# Set by finetune from other keys; `kwargs` may not set them.
MANAGED_ARGUMENTS = ("params", "lr", "weight_decay", "betas", "eps", "momentum", "nesterov")


def optimizer_class(name: str) -> type:
    """The class a recipe's `optimizer.name` refers to (a short name or a dotted path)."""
    path = BUILTIN_OPTIMIZERS.get(name, name)
    module_name, _, class_name = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"cannot import module '{module_name}' for optimizer '{name}': {error}") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        near = difflib.get_close_matches(class_name, dir(module), n=1)
        hint = f"; did you mean '{module_name}.{near[0]}'?" if near else ""
        raise ValueError(f"module '{module_name}' has no class '{class_name}'{hint}")
    import torch

    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ValueError(f"'{path}' is not a torch.optim.Optimizer class")
    return cls


def optimizer_arguments(cls: type) -> tuple[set[str], bool]:
    """The keyword arguments a class's constructor takes, and whether it takes **kwargs."""
    parameters = inspect.signature(cls.__init__).parameters
    var_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    return {n for n in parameters if n != "self"}, var_keyword


class OptimizerSection(Section):
    name: str = "adamw"
    """`adamw` (decoupled weight decay, Loshchilov & Hutter 2019; torch's fused or foreach kernel),
    `adam`, `sgd`, `rmsprop`, `adagrad`, `adafactor` (Shazeer & Stern 2018, transformers', with the
    LR driven by `schedule:`), or the dotted path of any torch.optim.Optimizer class, e.g.
    `torch.optim.NAdam`. For all but `adamw` and `adafactor`, weight decay is the classic L2 added to
    the gradient."""

    lr: Annotated[float, Field(gt=0, le=1)] | Auto = "auto"
    """Peak learning rate (reached at the end of warmup). `auto`: chosen for the loaded model's width,
    2e-5 x (768 / hidden size)^2 to one significant digit (BERT-base 2e-5, MiniLM-L6 8e-5, BERT-large
    1e-5); the run prints the value and writes it to its recipe.yaml (docs/defaults.md)."""

    weight_decay: float = Field(0.01, ge=0, le=1)
    """Weight decay for weights; biases and normalisation weights never decay."""

    betas: tuple[float, float] | None = None
    """Adam's beta1 and beta2, each in [0, 1) (adamw, adam, and dotted classes that take `betas`);
    null keeps the optimizer's own default ((0.9, 0.999) for adamw and adam)."""

    eps: float | None = Field(None, gt=0, le=1e-2)
    """Epsilon added to the denominator (adamw, adam, rmsprop, adagrad, dotted classes with `eps`);
    null keeps the optimizer's own default (1e-8 for adamw, adam and rmsprop, 1e-10 for adagrad;
    torch.optim.Adafactor's is a pair, which a float would break)."""

    no_decay: list[str] = ["bias"]
    """Parameter-name substrings that get no weight decay, besides every normalisation layer
    (LayerNorm, RMSNorm), which never decays."""

    momentum: float | None = Field(None, ge=0, lt=1)
    """Momentum of `sgd` (default 0.9) and `rmsprop` (default 0)."""

    nesterov: bool = False
    """`sgd` only: Nesterov momentum (Sutskever et al. 2013); needs momentum > 0."""

    kwargs: dict[str, Any] = {}
    """More constructor arguments of the optimizer class, checked against its signature, e.g.
    `{amsgrad: true}` for adam or `{decoupled_weight_decay: true}` for torch.optim.NAdam. LR, weight
    decay, betas, eps and momentum are set by their own keys."""

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, betas: tuple[float, float] | None) -> tuple[float, float] | None:
        for beta in betas or ():
            if not 0 <= beta < 1:
                raise ValueError(f"each beta must be in [0, 1), got {beta}")
        return betas

    @field_validator("name")
    @classmethod
    def _known_name(cls, name: str) -> str:
        if name in BUILTIN_OPTIMIZERS:
            return name
        if "." not in name:
            near = difflib.get_close_matches(name.lower(), BUILTIN_OPTIMIZERS, n=1)
            hint = f"did you mean '{near[0]}'? " if near else ""
            raise ValueError(
                f"unknown optimizer '{name}': {hint}choose one of {', '.join(BUILTIN_OPTIMIZERS)}, "
                f"or the dotted path of a torch.optim.Optimizer class (e.g. torch.optim.NAdam)"
            )
        optimizer_class(name)  # importable and an Optimizer, or a ValueError naming the problem
        return name

    @field_validator(*KEY_USERS)
    @classmethod
    def _taken_by_optimizer(cls, value: Any, info: ValidationInfo) -> Any:
        """A key the chosen optimizer does not take must keep its default."""
        name, key = info.data.get("name"), info.field_name
        if name is None or value == cls.model_fields[key].default:
            return value
        if name in BUILTIN_OPTIMIZERS:
            if name in KEY_USERS[key]:
                return value
            raise ValueError(f"{name} takes no `{key}` (only {', '.join(KEY_USERS[key])} do); remove it")
        accepted, var_keyword = optimizer_arguments(optimizer_class(name))
        if key in accepted or var_keyword:
            return value
        raise ValueError(f"{name} takes no `{key}`; remove it")

    @field_validator("weight_decay")
    @classmethod
    def _decay_taken(cls, value: float, info: ValidationInfo) -> float:
        name = info.data.get("name")
        if value == 0 or name is None or name in BUILTIN_OPTIMIZERS:
            return value
        accepted, var_keyword = optimizer_arguments(optimizer_class(name))
        if "weight_decay" not in accepted and not var_keyword:
            raise ValueError(f"{name} takes no weight decay; set it to 0")
        return value

    @field_validator("kwargs")
    @classmethod
    def _kwargs_in_signature(cls, kwargs: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        name = info.data.get("name")
        if not kwargs or name is None:
            return kwargs
        accepted, var_keyword = optimizer_arguments(optimizer_class(name))
        problems = []
        for key in kwargs:
            if key in MANAGED_ARGUMENTS:
                hint = f"set optimizer.{key} instead" if key != "params" else "parameters come from the model"
                problems.append(f"'{key}': {hint}")
            elif key not in accepted and not var_keyword:
                near = difflib.get_close_matches(key, sorted(accepted - set(MANAGED_ARGUMENTS)), n=1)
                hint = f" (did you mean '{near[0]}'?)" if near else ""
                problems.append(f"{name} has no argument '{key}'{hint}")
        if problems:
            valid = ", ".join(sorted(accepted - set(MANAGED_ARGUMENTS)))
            raise ValueError("; ".join(problems) + f"; the arguments it takes: {valid}")
        return kwargs

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> "OptimizerSection":
        if self.nesterov and self.name == "sgd" and self.momentum == 0:
            raise ValueError("optimizer.nesterov: Nesterov needs momentum; set optimizer.momentum above 0")
        return self
