"""Per-embolus facts of a pseudo-mask: size, position (index and LPS mm), heat."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from ..geometry import Geometry
from ..preprocessing.crop import mask_box
from ._grid import structure


def emboli_count(n: int) -> str:
    """``"1 embolus"``, ``"3 emboli"``: how the CLIs and progress messages count emboli."""
    return f"{n} embol{'us' if n == 1 else 'i'}"


def describe_emboli(mask: np.ndarray, heatmap: np.ndarray | None, geometry: Geometry) -> list[dict[str, Any]]:
    """One dict per embolus (connected component) of ``mask``, in label order.

    Args:
        mask: ``(Z, Y, X)`` on ``geometry``'s grid; bool (components are then 26-connected and numbered in
            scan order) or an integer label map (its labels are used as given).
        heatmap: same shape, or ``None``.
        geometry: the grid (LPS mm).

    Returns:
        dicts with ``label``, ``voxels``, ``volume_mm3``, ``centroid_ijk`` (continuous index, (i, j, k) =
        (x, y, z) order), ``centroid_lps_mm`` (LPS world, mm), ``peak_heat`` and ``peak_ijk`` (index of the
        hottest voxel; both ``None`` without a heatmap).
    """
    mask = np.asarray(mask)
    if mask.shape != geometry.shape_zyx:
        raise ValueError(f"mask shape {mask.shape} does not match grid (Z, Y, X) {geometry.shape_zyx}")
    if heatmap is not None and np.shape(heatmap) != mask.shape:
        raise ValueError(f"heatmap shape {np.shape(heatmap)} does not match mask shape {mask.shape}")
    if mask.dtype != bool and not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(f"mask must be bool or an integer label map, got {mask.dtype}")
    box = mask_box(mask)
    if box is None:
        return []
    # everything below runs in the mask's bounding box (a few emboli in a 512 x 512 x 300 CT: seconds saved)
    mask = mask[box.slices]
    offset_zyx = np.array(box.start_zyx, dtype=np.float64)
    labels = ndimage.label(mask, structure=structure(3))[0] if mask.dtype == bool else mask
    ids = [int(i) for i in np.unique(labels) if i > 0]
    voxel_mm3 = float(np.prod(geometry.spacing_mm))
    counts = ndimage.sum_labels(np.ones(labels.shape), labels=labels, index=ids)
    centroids_zyx = np.atleast_2d(ndimage.center_of_mass(np.ones(labels.shape), labels=labels, index=ids))
    centroids_ijk = (centroids_zyx + offset_zyx)[:, ::-1]
    world = geometry.index_to_world(centroids_ijk)
    if heatmap is not None:
        heat_box = np.asarray(heatmap)[box.slices]
        heat = np.where(np.isnan(heat_box), -np.inf, np.asarray(heat_box, dtype=np.float64))
        peaks = ndimage.maximum(heat, labels=labels, index=ids)
        peak_positions = np.atleast_2d(ndimage.maximum_position(heat, labels=labels, index=ids)) + np.array(box.start_zyx)
    emboli = []
    for n, label in enumerate(ids):
        entry: dict[str, Any] = {
            "label": label,
            "voxels": int(counts[n]),
            "volume_mm3": float(counts[n] * voxel_mm3),
            "centroid_ijk": tuple(float(v) for v in centroids_ijk[n]),
            "centroid_lps_mm": tuple(float(v) for v in world[n]),
            "peak_heat": None,
            "peak_ijk": None,
        }
        if heatmap is not None:
            entry["peak_heat"] = float(peaks[n])
            entry["peak_ijk"] = tuple(int(v) for v in peak_positions[n][::-1])
        emboli.append(entry)
    return emboli
