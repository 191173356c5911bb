"""`optimizer:` the optimizer and its hyper-parameters."""

from typing import Literal

from pydantic import Field, field_validator

from .base import Section


class OptimizerSection(Section):
    name: Literal["adamw"] = "adamw"
    """Optimizer. `adamw`: decoupled weight decay (Loshchilov & Hutter, 2019), torch's fused/foreach kernel."""

    lr: float = Field(2e-5, gt=0, le=1)
    """Peak learning rate (reached at the end of warmup)."""

    weight_decay: float = Field(0.01, ge=0, le=1)
    """Decoupled weight decay for weights; biases and normalisation weights never decay."""

    betas: tuple[float, float] = (0.9, 0.999)
    """Adam's beta1 and beta2, each in [0, 1)."""

    eps: float = Field(1e-8, gt=0, le=1e-2)
    """Adam's epsilon."""

    no_decay: list[str] = ["bias"]
    """Parameter-name substrings that get no weight decay, besides every normalisation layer
    (LayerNorm, RMSNorm), which never decays."""

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, betas: tuple[float, float]) -> tuple[float, float]:
        for beta in betas:
            if not 0 <= beta < 1:
                raise ValueError(f"each beta must be in [0, 1), got {beta}")
        return betas
