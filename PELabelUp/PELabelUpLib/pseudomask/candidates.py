"""Candidate clot voxels: hypodense voxels inside the eroded pulmonary-artery territory.

The explanation heatmap is too coarse to be a mask; it *selects* among these candidates
(:mod:`PELabelUpLib.pseudomask.selection`). The HU rule, for a CT pulmonary angiogram in HU:

* **Territory erosion.** Voxels at the wall of the artery territory mix lumen contrast with lung or
  mediastinal fat and can read 0-150 HU -- exactly like clot. They are removed first: by default one voxel
  layer (any voxel with a face neighbour outside the territory); with ``erosion_mm`` every voxel whose
  centre lies within ``erosion_mm`` mm (Euclidean, anisotropic spacing) of a voxel outside the territory.
  The array border does not count as outside.
* **Lumen reference.** The median HU of the eroded territory (contrast-filled blood dominates it even
  with a large clot); ``lumen_hu`` overrides it.
* **Clot window.** ``clot_low_hu <= HU < clot_high_hu`` with, by default,
  ``clot_high_hu = min(150, (lumen + 60) / 2)``: halfway between acute thrombus (~60 HU, range 20-90)
  and the opacified lumen, capped at 150 HU (enhanced blood in a diagnostic CTPA reads >= ~200 HU).
  ``clot_low_hu = -50`` excludes fat, lung and air. A lumen at or below 150 HU (poor opacification) is
  logged as a warning: the window then shrinks below 105 HU and candidates are unreliable.
* **Wall voxels far from contrast** (``wall_clear_mm``, off by default). The erosion also removes thin
  branches whole, and an occlusive clot in a small branch can be nothing but wall layer. A wall voxel in the
  clot window is partial volume only where opacified lumen (HU at or above the window's upper bound) lies
  next to it; with ``wall_clear_mm`` set, wall voxels in the window whose nearest opacified voxel is farther
  than ``wall_clear_mm`` are candidates too. On the validation phantoms (``synth --n 12 --seed 202``, 20
  emboli) 1.5 mm gave 17 emboli a candidate component of 30 mm^3 or more, against 15. But the chain with
  Grad-CAM still found 14 either way, and its false components rose from 0.25 to 0.75 per scan (2.5 mm:
  0.67). So the rule stays off.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from ._grid import check_same_shape, spacing_for_array, structure

log = logging.getLogger(__name__)

CLOT_REFERENCE_HU = 60.0
CLOT_HIGH_CAP_HU = 150.0
CLOT_LOW_HU = -50.0


def clot_threshold_hu(lumen_hu: float, *, cap_hu: float = CLOT_HIGH_CAP_HU,
                      clot_reference_hu: float = CLOT_REFERENCE_HU) -> float:
    """Upper HU bound of clot candidates: ``min(cap_hu, (lumen_hu + clot_reference_hu) / 2)``."""
    if not np.isfinite(lumen_hu):
        raise ValueError(f"lumen_hu must be finite, got {lumen_hu}")
    return float(min(cap_hu, 0.5 * (lumen_hu + clot_reference_hu)))


def erode_territory(
    territory: np.ndarray, spacing_mm: Sequence[float], erosion_mm: float | None = None
) -> np.ndarray:
    """The territory (bool ``(Z, Y, X)`` or ``(Y, X)``) without its wall layer (see module doc).

    ``spacing_mm`` is in index order ``(x, y[, z])`` like ``Geometry.spacing_mm``; ``erosion_mm=None`` is
    one face-connected voxel layer, ``0`` no erosion.
    """
    territory = np.asarray(territory, dtype=bool)
    spacing = spacing_for_array(spacing_mm, territory.ndim)
    if erosion_mm is None:
        faces = structure(territory.ndim, 6 if territory.ndim == 3 else 4)
        return ndimage.binary_erosion(territory, structure=faces, border_value=1)
    if not np.isfinite(erosion_mm) or erosion_mm < 0:
        raise ValueError(f"erosion_mm must be >= 0 or None, got {erosion_mm}")
    if erosion_mm == 0 or not territory.any():
        return territory.copy()
    if territory.all():
        return territory.copy()
    depth_mm = ndimage.distance_transform_edt(territory, sampling=spacing)
    return depth_mm > erosion_mm


def lumen_median_hu(hu: np.ndarray, territory: np.ndarray) -> float:
    """Median HU of ``hu`` over the bool ``territory`` (NaN when it is empty)."""
    values = np.asarray(hu)[np.asarray(territory, dtype=bool)]
    return float(np.median(values)) if values.size else float("nan")


def candidate_clot_voxels(
    hu: np.ndarray,
    artery_territory: np.ndarray,
    *,
    spacing_mm: Sequence[float],
    erosion_mm: float | None = None,
    clot_low_hu: float = CLOT_LOW_HU,
    clot_high_hu: float | None = None,
    lumen_hu: float | None = None,
    wall_clear_mm: float | None = None,
    inner: np.ndarray | None = None,
) -> np.ndarray:
    """Bool mask of voxels that could be clot (the rule is in the module doc).

    Args:
        hu: CT in HU, ``(Z, Y, X)`` (or a 2-D ``(Y, X)`` slice).
        artery_territory: same shape, nonzero inside the pulmonary arteries *including* what fills them.
        spacing_mm: voxel size in index order ``(x, y, z)`` (as ``Geometry.spacing_mm``), mm.
        erosion_mm: wall layer removed: ``None`` one voxel, else mm (``0``: none).
        clot_low_hu: lower HU bound (inclusive).
        clot_high_hu: upper HU bound (exclusive); ``None``: :func:`clot_threshold_hu` of the lumen.
        lumen_hu: lumen reference HU; ``None``: median of the eroded territory.
        wall_clear_mm: also take the eroded wall's voxels in the window that lie farther than this (mm) from
            any voxel at or above the window's upper bound; ``None``: never. Opacified voxels outside the
            array are not seen: give the territory a margin of at least this much.
        inner: :func:`erode_territory` of the territory with ``erosion_mm`` when the caller has it already.
    """
    hu = np.asarray(hu)
    territory = np.asarray(artery_territory) != 0
    check_same_shape(hu=hu, artery_territory=territory)
    if inner is None:
        inner = erode_territory(territory, spacing_mm, erosion_mm)
    else:
        inner = np.asarray(inner, dtype=bool)
        check_same_shape(hu=hu, inner=inner)
    if not inner.any():
        log.warning("artery territory (%d voxels) is empty after erosion: no clot candidates",
                    int(territory.sum()))
        return np.zeros_like(inner)
    if clot_high_hu is None:
        lumen = lumen_median_hu(hu, inner) if lumen_hu is None else float(lumen_hu)
        clot_high_hu = clot_threshold_hu(lumen)
        if not clot_low_hu < clot_high_hu:
            log.warning("lumen median %.0f HU: no opacified lumen in the territory, no clot candidates", lumen)
            return np.zeros_like(inner)
        if lumen <= CLOT_HIGH_CAP_HU:
            log.warning("lumen median %.0f HU: arteries poorly opacified, clot candidates unreliable", lumen)
        log.info("clot candidates: lumen %.0f HU -> window [%.0f, %.0f) HU", lumen, clot_low_hu, clot_high_hu)
    if not clot_low_hu < clot_high_hu:
        raise ValueError(f"clot HU window is empty: [{clot_low_hu}, {clot_high_hu})")
    window = (hu >= clot_low_hu) & (hu < clot_high_hu)
    candidates = inner & window
    if wall_clear_mm is not None:
        if not np.isfinite(wall_clear_mm) or wall_clear_mm < 0:
            raise ValueError(f"wall_clear_mm must be >= 0 or None, got {wall_clear_mm}")
        wall = territory & ~inner & window
        opacified = hu >= clot_high_hu
        if wall.any():
            if opacified.any():  # with no opacified voxel at all, every wall voxel is clear of contrast
                clear_mm = ndimage.distance_transform_edt(~opacified, sampling=spacing_for_array(spacing_mm, hu.ndim))
                wall &= clear_mm > wall_clear_mm
            candidates |= wall
    return candidates


def components(
    mask: np.ndarray,
    spacing_mm: Sequence[float],
    min_volume_mm3: float = 0.0,
    *,
    connectivity: int | None = None,
) -> np.ndarray:
    """Label the connected components of ``mask`` and drop those under ``min_volume_mm3``.

    Args:
        mask: bool ``(Z, Y, X)`` (or ``(Y, X)``; volumes are then areas in mm^2).
        spacing_mm: voxel size in index order ``(x, y[, z])``, mm.
        min_volume_mm3: components with ``voxels * voxel volume < min_volume_mm3`` are dropped.
        connectivity: 26 (default), 18 or 6 in 3-D; 8 (default) or 4 in 2-D.

    Returns:
        ``int32`` labels, 0 background, the kept components numbered ``1..n`` in scan order.
    """
    mask = np.asarray(mask, dtype=bool)
    voxel_mm3 = float(np.prod(spacing_for_array(spacing_mm, mask.ndim)))
    if not np.isfinite(min_volume_mm3) or min_volume_mm3 < 0:
        raise ValueError(f"min_volume_mm3 must be >= 0, got {min_volume_mm3}")
    labels, n = ndimage.label(mask, structure=structure(mask.ndim, connectivity))
    counts = np.bincount(labels.ravel(), minlength=n + 1)
    keep = counts * voxel_mm3 >= min_volume_mm3
    keep[0] = False
    relabel = np.zeros(n + 1, dtype=np.int32)
    relabel[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    if n and not keep[1:].all():
        log.debug("dropped %d of %d components under %.1f mm3", int(n - keep[1:].sum()), n, min_volume_mm3)
    return relabel[labels]
