"""Our heatmap normaliser: per-sample min-max to ``[0, 1]``, NaN-safe, never inverted.

MONAI's ``default_normalizer`` maps (min, max) to (1, 0), i.e. it *inverts* maps; it is not used here.
"""

from __future__ import annotations

import torch
from torch import Tensor


def normalize_heatmaps(maps: Tensor) -> Tensor:
    """Min-max scale each sample of ``maps`` ``(N, *spatial)`` to ``[0, 1]``.

    Rules:
        * NaN and +/-inf are ignored when finding the range and come out as 0.
        * A sample whose finite values are all equal (or that has none) carries no evidence: all 0.
        * The result is ``float32`` (or the input's floating dtype when wider), same shape and device.
    """
    if maps.ndim < 2:
        raise ValueError(f"maps must be (N, *spatial), got shape {tuple(maps.shape)}")
    work = maps.detach().to(torch.float64)
    finite = torch.isfinite(work)
    flat = work.flatten(1)
    flat_finite = finite.flatten(1)
    low = torch.where(flat_finite, flat, torch.full_like(flat, float("inf"))).amin(dim=1)
    high = torch.where(flat_finite, flat, torch.full_like(flat, float("-inf"))).amax(dim=1)
    span = high - low
    usable = torch.isfinite(span) & (span > 0)
    shape = (-1,) + (1,) * (maps.ndim - 1)
    low = torch.where(usable, low, torch.zeros_like(low)).view(shape)
    span = torch.where(usable, span, torch.ones_like(span)).view(shape)
    scaled = ((work - low) / span).clamp(0.0, 1.0)
    scaled = torch.where(finite & usable.view(shape), scaled, torch.zeros_like(scaled))
    out_dtype = maps.dtype if maps.dtype == torch.float64 else torch.float32
    return scaled.to(out_dtype)
