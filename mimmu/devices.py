"""Choice of device and dtype: CUDA with half precision where present, CPU float32 otherwise."""

from __future__ import annotations

import contextlib
import resource
import sys

import torch

from mimmu.errors import MimmuError

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """Return `device`, or CUDA when available and the CPU otherwise."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise MimmuError(f"invalid device {device!r}; use 'cpu', 'cuda' or 'cuda:N'") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise MimmuError(f"device {device!r} requested but CUDA is not available here; use --device cpu")
    if resolved.type not in ("cpu", "cuda"):
        raise MimmuError(f"unsupported device {device!r}; use 'cpu', 'cuda' or 'cuda:N'")
    return resolved


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """Return `dtype`, or float16 on CUDA and float32 on the CPU when it is None."""
    if dtype is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise MimmuError(f"invalid dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
        dtype = DTYPES[dtype]
    if dtype == torch.float16 and device.type == "cpu":
        raise MimmuError("float16 is not supported on the CPU; use --dtype float32 or bfloat16")
    return dtype


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """Return a context that runs forward passes in `dtype` on `device`, or does nothing for float32.

    Erasures keep their trained weights in float32 while the rest of a float16 or bfloat16
    model stays in that dtype. Autocast lets the two meet in one forward pass, on CUDA and
    on the CPU (there with bfloat16 only).
    """
    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)


def peak_memory_mb(device: torch.device) -> float:
    """Return peak memory in MiB: CUDA memory allocated by torch on a GPU, the process's peak resident set on the CPU.

    The CPU figure covers the whole process since it started (ru_maxrss), not one step.
    """
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10
