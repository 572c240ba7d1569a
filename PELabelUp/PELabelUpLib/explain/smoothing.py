"""Separable Gaussian blur of ``(N, C, *spatial)`` tensors (2-D or 3-D), replicate-padded."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def _kernel_1d(sigma: float, truncate: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    radius = max(1, int(math.ceil(truncate * sigma)))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return (kernel / kernel.sum()).to(dtype=dtype, device=device)


def gaussian_blur(x: Tensor, sigma: float | Sequence[float], *, truncate: float = 3.0) -> Tensor:
    """Blur every channel of ``x`` ``(N, C, *spatial)`` with a Gaussian over the spatial axes only.

    Args:
        x: 2-D ``(N, C, H, W)`` or 3-D ``(N, C, D, H, W)`` floating tensor.
        sigma: standard deviation in voxels, one value or one per spatial axis (in ``x``'s axis order);
            0 leaves that axis untouched.
        truncate: kernel radius in standard deviations.

    Edges are replicate-padded, so a constant image stays constant.
    """
    n_spatial = x.ndim - 2
    if n_spatial not in (2, 3):
        raise ValueError(f"x must be (N, C, H, W) or (N, C, D, H, W), got shape {tuple(x.shape)}")
    sigmas = [float(sigma)] * n_spatial if isinstance(sigma, (int, float)) else [float(s) for s in sigma]
    if len(sigmas) != n_spatial or any(not math.isfinite(s) or s < 0 for s in sigmas):
        raise ValueError(f"sigma must be {n_spatial} non-negative voxel counts, got {sigma}")
    n, c = x.shape[:2]
    out = x.reshape(n * c, 1, *x.shape[2:])
    conv = F.conv2d if n_spatial == 2 else F.conv3d
    for axis, s in enumerate(sigmas):
        if s == 0:
            continue
        kernel = _kernel_1d(s, truncate, out.dtype, out.device)
        radius = (kernel.numel() - 1) // 2
        shape = [1, 1] + [1] * n_spatial
        shape[2 + axis] = kernel.numel()
        pad = [0, 0] * n_spatial  # F.pad order: last axis first
        pad[2 * (n_spatial - 1 - axis)] = radius
        pad[2 * (n_spatial - 1 - axis) + 1] = radius
        out = conv(F.pad(out, pad, mode="replicate"), kernel.view(shape))
    return out.reshape(x.shape)
