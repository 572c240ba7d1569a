"""How the networks run at inference: numeric precision, memory layout, sliding windows.

Precision (``auto`` | ``float32``, the ``--precision`` of ``pelabelup analyze``):

- ``auto``: mixed precision where the hardware computes it natively. On CUDA every network runs under float16
  autocast. On a CPU with native bfloat16 (AMX or AVX512-BF16, :func:`cpu_has_native_bf16`) the two 3-D networks
  (artery territory and segmenter, most of an analysis's arithmetic) run under bfloat16 autocast; the 2-D slice
  classifier and the explainers stay float32 there (their gradients feed the explanation, and at 128 px per
  slice they gain little). Other CPUs: float32.
- ``float32``: float32 everywhere (bit-reproducible on one machine, slower).

Measured on one 512 x 512 x 300 study (2 cores of an AMX CPU, ``benchmarks/bench_analyze.py``): the segmenter's
sliding windows take 19.3 s in float32, 12.2 s with the channels-last layout and 4.2 s with bfloat16 added; the
bfloat16 mask agrees with the float32 one at Dice 0.999 (artery territory: 0.998).

3-D networks always run in the channels-last memory layout (``torch.channels_last_3d``): oneDNN's convolutions
are faster on it, and the results are the same to float32 rounding.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..precision import INFERENCE_PRECISIONS


def check_precision(precision: str) -> str:
    """``precision`` when it is one of :data:`~PELabelUpLib.precision.INFERENCE_PRECISIONS`, else ``ValueError``."""
    if precision not in INFERENCE_PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of: {', '.join(INFERENCE_PRECISIONS)}")
    return precision


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 convolutions natively (oneDNN with AMX or AVX512-BF16).

    Elsewhere bfloat16 autocast is emulated and slower than float32, so ``auto`` keeps float32 there.
    """
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without the query
        return False


def autocast_dtype(device: str | torch.device, precision: str = "auto", *, cpu: bool = True) -> torch.dtype | None:
    """The autocast dtype a network runs under, or ``None`` for float32.

    Args:
        device: where the network runs.
        precision: ``auto`` or ``float32`` (see the module docstring).
        cpu: whether this network may use bfloat16 on a CPU (the 3-D networks: yes; the classifier: no).
    """
    if check_precision(precision) == "float32":
        return None
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.float16
    if kind == "cpu" and cpu and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def dtype_name(dtype: torch.dtype | None) -> str:
    """``"bfloat16"``, ``"float16"``; ``"float32"`` for ``None`` (no autocast)."""
    return "float32" if dtype is None else str(dtype).removeprefix("torch.")


def autocast_context(device: str | torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``'s kind, or a no-op for ``None`` (the trainers' too)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def inference_autocast(device: str | torch.device, precision: str = "auto", *,
                       cpu: bool = True) -> contextlib.AbstractContextManager:
    """The autocast context of :func:`autocast_dtype` (a no-op in float32)."""
    return autocast_context(device, autocast_dtype(device, precision, cpu=cpu))


def precision_record(device: str | torch.device, precision: str = "auto") -> dict[str, str]:
    """What ``result.json`` records: the setting and the dtype each kind of network ran in."""
    return {"setting": precision, "networks_3d": dtype_name(autocast_dtype(device, precision)),
            "classifier": dtype_name(autocast_dtype(device, precision, cpu=False))}


def sliding_window_probability(image: np.ndarray, network: nn.Module, roi_size: Sequence[int], *,
                               device: str | torch.device = "cpu", precision: str = "auto",
                               sw_batch_size: int = 2, overlap: float = 0.25) -> np.ndarray:
    """Sigmoid probability ``float32 (Z, Y, X)`` of a one-output 3-D network over a ``(C, Z, Y, X)`` image.

    MONAI's sliding-window inference with Gaussian blending; volumes smaller than a window are padded with 0.
    The network is put in the channels-last layout (in place, outside inference mode, so it stays trainable:
    its weights keep their values) and run under :func:`inference_autocast`; the logits are blended in float32.
    """
    from monai.inferers import sliding_window_inference

    if image.ndim != 4:
        raise ValueError(f"image must be (C, Z, Y, X), got shape {image.shape}")
    dtype = autocast_dtype(device, precision)  # resolved once, not per window
    network.to(memory_format=torch.channels_last_3d)

    def predictor(window: torch.Tensor) -> torch.Tensor:
        with autocast_context(device, dtype):
            return network(window.contiguous(memory_format=torch.channels_last_3d)).float()

    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None].to(device)
        logits = sliding_window_inference(x, roi_size=tuple(int(r) for r in roi_size), sw_batch_size=sw_batch_size,
                                          predictor=predictor, overlap=overlap, mode="gaussian")
        return torch.sigmoid(logits)[0, 0].contiguous().cpu().numpy()
