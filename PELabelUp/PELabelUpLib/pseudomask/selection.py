"""The heatmap selects candidate clot components; it is never the mask itself.

Rule: a candidate component is kept when it overlaps the hysteresis region of the heatmap, i.e. at least
one of its voxels has heat ``> low`` and is connected, through heatmap voxels ``> low`` (anywhere, not only
inside candidates), to a voxel with heat ``> high``. A kept component is kept whole -- its voxels come from
the HU rule, not from the heatmap -- so a coarse Grad-CAM blob that grazes a clot selects all of it.
Every component whose own peak heat is ``> high`` is therefore kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ._grid import check_same_shape, spacing_for_array
from .hysteresis import hysteresis


@dataclass(frozen=True)
class Selection:
    """Result of :func:`select_components`.

    Attributes:
        labels: ``int32`` array like the candidates: kept components keep their candidate id, others 0.
        kept_ids: candidate ids kept, hottest first (by peak heat, ties by id).
        peak_heat: candidate id -> highest heat over the component's voxels, for every kept id.
    """

    labels: np.ndarray
    kept_ids: tuple[int, ...]
    peak_heat: dict[int, float] = field(default_factory=dict)

    @property
    def mask(self) -> np.ndarray:
        return self.labels > 0


def peaks_by_label(labels: np.ndarray, n_labels: int, heatmap: np.ndarray) -> np.ndarray:
    """``(n_labels,)``: the peak of ``heatmap`` over each label ``1..n_labels`` of ``labels`` (same shape); -inf
    for a label without voxels or with NaN heat only.

    Visits only the labelled voxels: ``ndimage.maximum`` sorts the whole array, seconds on a large box.
    """
    labels = np.asarray(labels)
    inside = labels > 0
    heat = np.asarray(heatmap, dtype=np.float64)[inside]
    heat[np.isnan(heat)] = -np.inf
    peaks = np.full(int(n_labels), -np.inf)
    np.maximum.at(peaks, labels[inside] - 1, heat)
    return peaks


def component_peaks(labels: np.ndarray, heatmap: np.ndarray) -> dict[int, float]:
    """Candidate id -> maximum heat over its voxels (NaN heat ignored; -inf when all NaN)."""
    labels = np.asarray(labels)
    ids = np.unique(labels[labels > 0])
    if ids.size == 0:
        return {}
    peaks = peaks_by_label(labels, int(ids[-1]), heatmap)
    return {int(i): float(peaks[i - 1]) for i in ids}


def select_components(
    candidate_labels: np.ndarray,
    heatmap: np.ndarray,
    low: float,
    high: float,
    *,
    connectivity: int | None = None,
    spacing_mm: Sequence[float] | None = None,
    min_volume_mm3: float = 0.0,
) -> Selection:
    """Keep the candidate components the heatmap points at (rule in the module doc).

    Args:
        candidate_labels: ``int`` labels ``(Z, Y, X)`` or ``(Y, X)`` (0 background), e.g. from
            :func:`PELabelUpLib.pseudomask.candidates.components`.
        heatmap: same shape, heat in ``[0, 1]`` (any scale works; NaN is cold).
        low, high: hysteresis thresholds on the heat, ``low <= high``.
        connectivity: of the hysteresis region (26/18/6 in 3-D, 8/4 in 2-D; default full).
        spacing_mm: voxel size in index order ``(x, y[, z])``, mm; needed only with ``min_volume_mm3``.
        min_volume_mm3: kept components smaller than this are dropped.
    """
    labels = np.asarray(candidate_labels)
    heat = np.asarray(heatmap, dtype=np.float64)
    check_same_shape(candidate_labels=labels, heatmap=heat)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"candidate_labels must be an integer label array, got {labels.dtype}")
    region = hysteresis(heat, low, high, connectivity=connectivity)
    touched = np.unique(labels[region & (labels > 0)])
    if min_volume_mm3 > 0 and touched.size:
        if spacing_mm is None:
            raise ValueError("min_volume_mm3 needs spacing_mm")
        voxel_mm3 = float(np.prod(spacing_for_array(spacing_mm, labels.ndim)))
        sizes = ndimage.sum_labels(np.ones(labels.shape), labels=labels, index=touched)
        touched = touched[np.asarray(sizes) * voxel_mm3 >= min_volume_mm3]
    kept_labels = np.where(np.isin(labels, touched), labels, 0).astype(np.int32)
    peaks = component_peaks(kept_labels, heat)
    kept_ids = tuple(sorted(peaks, key=lambda i: (-peaks[i], i)))
    return Selection(labels=kept_labels, kept_ids=kept_ids, peak_heat=peaks)
