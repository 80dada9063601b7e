"""Numeric precision of training and prediction: fp32, or bf16 autocast where the hardware has native bf16.

``precision`` is one of:

- ``fp32``: plain float32 everywhere (the default; bit-reproducible on a CPU with a fixed thread count).
- ``bf16``: ``torch.autocast(dtype=torch.bfloat16)`` around the forward pass. Matrix products run in bfloat16
  (on a CPU through oneDNN, which uses AVX512-BF16 / AMX tiles when the CPU has them), softmax, norms and
  the loss stay in float32 as autocast's op lists decide; weights, gradients and optimizer state stay float32.
  Asked for on hardware without native bf16 it still runs (emulated, usually slower than fp32).
- ``auto``: ``bf16`` where it is native (a CUDA GPU with bf16 support; a CPU whose flags include
  ``avx512_bf16`` or ``amx_bf16``), else ``fp32``.

Weights are saved in float32 whatever the precision, so a model trained in bf16 predicts in fp32 and back.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch

from catmner_model.errors import CatmnerError

PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")
_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where there is no such file)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """Whether ``device`` computes bf16 matrix products natively (no emulation)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        if not any(flag in cpu_flags() for flag in _CPU_BF16_FLAGS):
            return False
        mkldnn = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        return bool(mkldnn()) if mkldnn is not None else True
    return False


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise CatmnerError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    return precision


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """``fp32`` or ``bf16``: what ``precision`` means on ``device`` (``auto`` -> bf16 only where native)."""
    check_precision(precision)
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


@contextlib.contextmanager
def autocast(device: torch.device | str, precision: str) -> Iterator[None]:
    """The forward-pass context of ``precision`` on ``device`` (a no-op for fp32)."""
    device = torch.device(device)
    if resolve_precision(precision, device) == "bf16" and device.type in ("cpu", "cuda"):
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    else:
        yield


def cast_linear_weights(model: torch.nn.Module, dtype: torch.dtype = torch.bfloat16) -> torch.nn.Module:
    """Store every ``nn.Linear``'s weight and bias in ``dtype`` (inference under `autocast` only).

    Autocast casts a float32 weight to bf16 at every forward (and again after each autocast region ends, so
    for every single-tweet call); a weight already in bf16 is used as is. The bf16 values are the same
    (round-to-nearest-even either way), so the outputs are bit-identical to autocast over float32 weights,
    without the per-call casts. Outside autocast such a model no longer runs in fp32: keep it for bf16.
    """
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.to(dtype)
    return model
