"""Pointing game: does the heatmap's hottest voxel fall on (or near) an embolus?

Per positive sample (slice or volume whose reference mask is not empty) the *argmax* of the heatmap is
the first maximal voxel in C order (NaN counts as cold; an all-NaN map misses). It is a hit when the
Euclidean distance, in mm, from its centre to the nearest reference voxel centre is ``<= tolerance_mm``
-- the reference dilated by a ball of that radius. The default 5 mm (about a segmental artery's width)
forgives a coarse Grad-CAM that points at the right vessel next to the clot; 0 requires the argmax
inside the embolus. Negative samples are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from ._grid import check_pair, spacing_for_array

DEFAULT_TOLERANCE_MM = 5.0


def pointing_hits(
    heatmaps: Iterable[np.ndarray],
    truth_masks: Iterable[np.ndarray],
    *,
    spacing_mm: Sequence[float] | None = None,
    tolerance_mm: float = DEFAULT_TOLERANCE_MM,
) -> np.ndarray:
    """Per sample: 1.0 hit, 0.0 miss, NaN for a negative sample (rules in the module doc).

    Args:
        heatmaps, truth_masks: paired 2-D ``(Y, X)`` or 3-D ``(Z, Y, X)`` arrays, or stacks of them.
        spacing_mm: voxel size in index order ``(x, y[, z])``, mm (``None``: 1 mm).
        tolerance_mm: hit distance, mm (>= 0).
    """
    if not np.isfinite(tolerance_mm) or tolerance_mm < 0:
        raise ValueError(f"tolerance_mm must be >= 0, got {tolerance_mm}")
    hits = []
    for n, (heat, truth) in enumerate(zip(heatmaps, truth_masks, strict=True)):
        heat = np.asarray(heat, dtype=float)
        inside = np.asarray(truth) != 0
        check_pair(heat, inside, (f"heatmap {n}", f"truth mask {n}"))
        if not inside.any():
            hits.append(np.nan)
            continue
        if np.isnan(heat).all():
            hits.append(0.0)
            continue
        spacing = spacing_for_array(spacing_mm, heat.ndim)
        peak = np.array(np.unravel_index(np.nanargmax(heat), heat.shape))
        distance_mm = np.sqrt((((np.argwhere(inside) - peak) * spacing) ** 2).sum(axis=1)).min()
        hits.append(float(distance_mm <= tolerance_mm + 1e-9))
    return np.asarray(hits, dtype=float)


def pointing_accuracy(
    heatmaps: Iterable[np.ndarray],
    truth_masks: Iterable[np.ndarray],
    *,
    spacing_mm: Sequence[float] | None = None,
    tolerance_mm: float = DEFAULT_TOLERANCE_MM,
) -> float:
    """Fraction of positive samples whose heatmap argmax hits an embolus (see :func:`pointing_hits`).

    Raises ``ValueError`` when no sample is positive.
    """
    hits = pointing_hits(heatmaps, truth_masks, spacing_mm=spacing_mm, tolerance_mm=tolerance_mm)
    positive = ~np.isnan(hits)
    if not positive.any():
        raise ValueError(f"no positive sample among {hits.size}: pointing accuracy is undefined")
    return float(hits[positive].mean())
