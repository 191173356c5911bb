"""The hardware side of a run: which precision this device computes in (`training.precision`)."""

from __future__ import annotations

import torch

from finetune.errors import FinetuneError


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX), where bf16 autocast pays off."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def resolve_precision(precision: str, use_cpu: bool) -> str:
    """`training.precision` on this machine (`choose_precision` with what the hardware offers)."""
    on_gpu = torch.cuda.is_available() and not use_cpu
    gpu_bf16 = on_gpu and precision == "auto" and torch.cuda.is_bf16_supported()
    cpu_bf16 = not on_gpu and precision == "auto" and cpu_has_bf16()
    return choose_precision(precision, on_gpu, gpu_bf16, cpu_bf16)


def choose_precision(precision: str, on_gpu: bool, gpu_bf16: bool, cpu_bf16: bool) -> str:
    """`auto` -> bf16 on GPUs with bf16 support, fp16 on other GPUs; on a CPU, bf16 when it has bf16
    instructions (`cpu_has_bf16`), else fp32 (see benchmarks/README.md for the measurements)."""
    if precision == "auto":
        if not on_gpu:
            return "bf16" if cpu_bf16 else "fp32"
        return "bf16" if gpu_bf16 else "fp16"
    if precision == "fp16" and not on_gpu:
        raise FinetuneError(
            "training.precision: fp16 needs a CUDA GPU (loss scaling is GPU-only); use bf16 or fp32 on CPU"
        )
    return precision
