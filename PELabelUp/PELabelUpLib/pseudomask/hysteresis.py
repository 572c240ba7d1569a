"""Hysteresis thresholding of heatmaps (2-D slices or 3-D volumes)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ._grid import structure


def hysteresis(
    heatmap: np.ndarray, low: float, high: float, *, connectivity: int | None = None
) -> np.ndarray:
    """Voxels with heat ``> low`` that are connected, through voxels ``> low``, to a voxel ``> high``.

    Args:
        heatmap: 2-D ``(Y, X)`` or 3-D ``(Z, Y, X)`` array; NaN counts as below every threshold.
        low, high: thresholds with ``low <= high`` (strict comparisons).
        connectivity: 8 or 4 (2-D), 26, 18 or 6 (3-D); ``None``: 8 / 26.

    Returns:
        bool array, same shape.
    """
    heat = np.asarray(heatmap)
    if not (np.isfinite(low) and np.isfinite(high)) or low > high:
        raise ValueError(f"need finite thresholds with low <= high, got low={low}, high={high}")
    with np.errstate(invalid="ignore"):
        above_low = heat > low
        above_high = heat > high
    labels, n = ndimage.label(above_low, structure=structure(heat.ndim, connectivity))
    keep = np.zeros(n + 1, dtype=bool)
    keep[labels[above_high]] = True
    keep[0] = False
    return keep[labels]
