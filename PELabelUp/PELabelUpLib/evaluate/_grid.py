"""Small helpers of the metrics: labelling (26/8-connected) and spacing order."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Fully connected components (26 in 3-D, 8 in 2-D) of ``mask != 0``: ``(labels, count)``."""
    mask = np.asarray(mask) != 0
    if mask.ndim not in (2, 3):
        raise ValueError(f"masks must be 2-D or 3-D, got shape {mask.shape}")
    labels, n = ndimage.label(mask, structure=ndimage.generate_binary_structure(mask.ndim, mask.ndim))
    return labels, int(n)


def spacing_for_array(spacing_mm: Sequence[float] | None, ndim: int) -> np.ndarray:
    """Spacing in index order ``(x, y[, z])`` -> array-axis order ``([Z,] Y, X)``; ``None`` is 1 mm."""
    if spacing_mm is None:
        return np.ones(ndim)
    values = np.asarray(spacing_mm, dtype=float)
    if values.shape != (ndim,) or not (np.isfinite(values).all() and (values > 0).all()):
        raise ValueError(f"spacing_mm must be {ndim} positive numbers in (x, y[, z]) order, got {spacing_mm}")
    return values[::-1]


def check_pair(pred: np.ndarray, truth: np.ndarray, names: tuple[str, str] = ("pred", "truth")) -> None:
    if np.shape(pred) != np.shape(truth):
        raise ValueError(f"{names[0]} shape {np.shape(pred)} differs from {names[1]} shape {np.shape(truth)}")
