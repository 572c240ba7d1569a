"""Mixed precision: bf16 (or fp16 with a gradient scaler) autocast on CUDA, full float32 on CPU."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal

import torch

PrecisionChoice = Literal["auto", "off", "bf16", "fp16"]


@dataclass
class Precision:
    """How forward passes run and how losses are scaled.

    Attributes:
        device_type: ``cuda`` or ``cpu``.
        dtype: the autocast dtype, or None for full float32.
        scaler: a :class:`torch.amp.GradScaler`; disabled (a pass-through) unless ``dtype`` is float16.
    """

    device_type: str
    dtype: torch.dtype | None
    scaler: torch.amp.GradScaler

    @property
    def name(self) -> str:
        return "fp32" if self.dtype is None else str(self.dtype).removeprefix("torch.")

    def autocast(self) -> contextlib.AbstractContextManager:
        """Context for forward pass and loss (a no-op in float32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)


def make_precision(device: torch.device, mode: PrecisionChoice = "auto") -> Precision:
    """Choose the precision for ``device``.

    ``auto``: bf16 on CUDA devices that support it (no scaler needed), fp16 + GradScaler on older GPUs,
    float32 on CPU (CPU autocast is slower than float32 for these small convolutions, and float32 keeps
    CPU runs bit-reproducible). ``off`` is float32 everywhere; ``bf16``/``fp16`` force a dtype (CUDA only).
    """
    if mode not in ("auto", "off", "bf16", "fp16"):
        raise ValueError(f"precision must be auto, off, bf16 or fp16, got {mode!r}")
    on_cuda = device.type == "cuda"
    if mode in ("bf16", "fp16") and not on_cuda:
        raise ValueError(f"precision {mode} needs a CUDA device, got {device}")
    if mode == "auto":
        mode = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if on_cuda else "off"
    dtype = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[mode]
    scaler = torch.amp.GradScaler(device.type if on_cuda else "cpu", enabled=dtype is torch.float16)
    return Precision(device_type=device.type, dtype=dtype, scaler=scaler)
