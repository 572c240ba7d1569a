"""Body detection and cropping to the chest, with exact geometry and a paste-back box.

Works for oblique and anisotropic grids: cropping selects an index range, and the cropped grid's origin is
the LPS position of the first kept voxel, ``origin + direction @ (spacing * start_index)``, so every kept
voxel keeps its world position. Body detection runs on a block-averaged copy (about 4 mm voxels).

Axis conventions: numpy arrays are ``(Z, Y, X)``; geometry sizes and indices are ``(x, y, z)``; LPS mm.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import InputError
from ..geometry import Geometry
from ..volume import CTVolume

log = logging.getLogger(__name__)

BODY_THRESHOLD_HU = -500.0
DETECTION_SPACING_MM = 4.0


@dataclass(frozen=True)
class CropBox:
    """Index ranges of a crop, numpy order: ``array[start_zyx[0]:stop_zyx[0], ...]``.

    Attributes:
        start_zyx: first kept index along (Z, Y, X).
        stop_zyx: one past the last kept index along (Z, Y, X).
        full_shape_zyx: shape of the uncropped array.
    """

    start_zyx: tuple[int, int, int]
    stop_zyx: tuple[int, int, int]
    full_shape_zyx: tuple[int, int, int]

    def __post_init__(self) -> None:
        for lo, hi, n in zip(self.start_zyx, self.stop_zyx, self.full_shape_zyx, strict=True):
            if not 0 <= lo < hi <= n:
                raise ValueError(f"bad crop box {self.start_zyx}..{self.stop_zyx} for shape {self.full_shape_zyx}")

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        """Numpy slices ``(Z, Y, X)`` selecting the crop from the full array."""
        return tuple(slice(lo, hi) for lo, hi in zip(self.start_zyx, self.stop_zyx, strict=True))

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        return tuple(hi - lo for lo, hi in zip(self.start_zyx, self.stop_zyx, strict=True))

    @property
    def start_index_xyz(self) -> tuple[int, int, int]:
        """First kept voxel as an (i, j, k) = (x, y, z) index of the full grid."""
        return (self.start_zyx[2], self.start_zyx[1], self.start_zyx[0])


def crop_geometry(geometry: Geometry, box: CropBox) -> Geometry:
    """The grid of ``box`` inside ``geometry``: same spacing and direction, origin moved to the first kept voxel."""
    if tuple(box.full_shape_zyx) != geometry.shape_zyx:
        raise ValueError(f"crop box is for shape {box.full_shape_zyx}, grid is {geometry.shape_zyx}")
    origin = geometry.index_to_world(np.asarray(box.start_index_xyz, dtype=float))
    z, y, x = box.shape_zyx
    return Geometry(size=(x, y, z), spacing_mm=geometry.spacing_mm,
                    origin_mm=tuple(float(v) for v in origin), direction=geometry.direction)


def uncrop(array: np.ndarray, crop_box: CropBox, full_shape: tuple[int, ...] | None = None, *,
           fill_value: float = 0) -> np.ndarray:
    """Paste a cropped ``(Z, Y, X)`` array back into a full-size array filled with ``fill_value``.

    ``full_shape`` defaults to ``crop_box.full_shape_zyx`` and must agree with it when given.
    """
    shape = tuple(crop_box.full_shape_zyx) if full_shape is None else tuple(int(s) for s in full_shape)
    if shape != tuple(crop_box.full_shape_zyx):
        raise ValueError(f"full_shape {shape} differs from the crop box's full shape {crop_box.full_shape_zyx}")
    if tuple(array.shape) != crop_box.shape_zyx:
        raise ValueError(f"array shape {array.shape} does not match the crop box shape {crop_box.shape_zyx}")
    out = np.full(shape, fill_value, dtype=array.dtype)
    out[crop_box.slices] = array
    return out


def mask_box(mask: np.ndarray, margin_voxels: int | Sequence[int] = 0) -> CropBox | None:
    """Bounding box ``(Z, Y, X)`` of the nonzero voxels of ``mask`` grown by ``margin_voxels`` (one number, or one
    per axis ``(Z, Y, X)``) and clipped to the array; ``None`` when the mask is empty."""
    nonzero = [np.flatnonzero(mask.any(axis=axes)) for axes in ((1, 2), (0, 2), (0, 1))]
    if any(n.size == 0 for n in nonzero):
        return None
    margins = (margin_voxels,) * 3 if isinstance(margin_voxels, int | np.integer) else tuple(margin_voxels)
    shape = tuple(int(n) for n in mask.shape)
    start = tuple(max(0, int(n[0]) - int(m)) for n, m in zip(nonzero, margins, strict=True))
    stop = tuple(min(size, int(n[-1]) + 1 + int(m)) for n, m, size in zip(nonzero, margins, shape, strict=True))
    return CropBox(start_zyx=start, stop_zyx=stop, full_shape_zyx=shape)


def _shrink_factors_zyx(geometry: Geometry, target_mm: float) -> tuple[int, int, int]:
    sx, sy, sz = geometry.spacing_mm
    nx, ny, nz = geometry.size
    return tuple(max(1, min(n, int(round(target_mm / s)))) for s, n in ((sz, nz), (sy, ny), (sx, nx)))


def body_mask(volume: CTVolume, *, threshold_hu: float = BODY_THRESHOLD_HU,
              detection_spacing_mm: float = DETECTION_SPACING_MM) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Coarse body mask: block-averaged HU above ``threshold_hu``, largest 3-D component, holes filled per slice.

    Returns:
        ``(mask, factors_zyx)``: a bool ``(Z', Y', X')`` mask on the block-averaged grid, where block
        ``(a, b, c)`` covers full voxels ``[a*fz, (a+1)*fz) x [b*fy, ...) x [c*fx, ...)``; trailing voxels that
        do not fill a whole block belong to the last block. All False when no voxel reaches the threshold.
    """
    factors = _shrink_factors_zyx(volume.geometry, detection_spacing_mm)
    hu = volume.hu
    # Pad to whole blocks by repeating the edge, then average blocks (memory: one float32 copy of the coarse grid).
    pad = [(0, (-n) % f) for n, f in zip(hu.shape, factors, strict=True)]
    if any(p[1] for p in pad):
        hu = np.pad(hu, pad, mode="edge")
    image = sitk.GetImageFromArray(hu)
    coarse = sitk.GetArrayFromImage(sitk.BinShrink(image, [factors[2], factors[1], factors[0]]))
    above = coarse > threshold_hu
    if not above.any():
        return above, factors
    labels, n = ndimage.label(above)
    if n > 1:
        counts = np.bincount(labels.ravel())
        counts[0] = 0
        above = labels == int(np.argmax(counts))
    per_slice = np.zeros((3, 3, 3), dtype=bool)
    per_slice[1] = ndimage.generate_binary_structure(2, 1)
    return ndimage.binary_fill_holes(above, structure=per_slice), factors


def find_chest_box(volume: CTVolume, *, margin_mm: float = 10.0,
                   threshold_hu: float = BODY_THRESHOLD_HU) -> CropBox:
    """Bounding box of the body (see :func:`body_mask`) plus ``margin_mm`` on every side, clipped to the grid.

    Raises:
        InputError: naming ``volume.source``, when no body is found (an all-air volume).
    """
    if not math.isfinite(margin_mm) or margin_mm < 0:
        raise ValueError(f"margin_mm must be >= 0, got {margin_mm}")
    mask, factors = body_mask(volume, threshold_hu=threshold_hu)
    if not mask.any():
        raise InputError(volume.source or "<volume>",
                         f"no body found: no region above {threshold_hu:g} HU (all air?), cannot crop to the chest")
    full = volume.hu.shape
    sx, sy, sz = volume.geometry.spacing_mm
    margins = tuple(int(math.ceil(margin_mm / s - 1e-9)) for s in (sz, sy, sx))
    start, stop = [], []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        # A block only partly covered by body can average below the threshold: add one block per side.
        lo = max(0, (int(hits[0]) - 1) * factors[axis])
        hi = min(full[axis], (int(hits[-1]) + 2) * factors[axis])
        start.append(max(0, lo - margins[axis]))
        stop.append(min(full[axis], hi + margins[axis]))
    return CropBox(start_zyx=tuple(start), stop_zyx=tuple(stop), full_shape_zyx=tuple(full))


def crop_volume(volume: CTVolume, box: CropBox) -> CTVolume:
    """Cut ``box`` out of ``volume``; the result keeps every kept voxel's LPS position (oblique grids too)."""
    geometry = crop_geometry(volume.geometry, box)
    meta = dict(volume.meta) | {"crop_start_zyx": list(box.start_zyx), "crop_stop_zyx": list(box.stop_zyx)}
    return CTVolume(hu=np.ascontiguousarray(volume.hu[box.slices]), geometry=geometry, source=volume.source,
                    meta=meta)


def crop_to_chest(volume: CTVolume, *, margin_mm: float = 10.0,
                  threshold_hu: float = BODY_THRESHOLD_HU) -> tuple[CTVolume, CropBox]:
    """Crop a CT to the body's bounding box plus ``margin_mm``.

    The body is found on a ~4 mm block-averaged copy: HU above ``threshold_hu`` (-500), largest connected
    component, holes filled per axial slice (array axis 0). The box is that component's extent at detection
    resolution grown by one block per side (a block only partly covered by body may average below the
    threshold), so it may exceed the body by up to two blocks (~8 mm); then ``margin_mm`` is added and the
    box clipped to the grid.
    Oblique and anisotropic grids are handled (the margin is converted per axis with that axis' spacing).

    Args:
        volume: CT in HU, ``(Z, Y, X)``.
        margin_mm: margin added on every side, mm.
        threshold_hu: body threshold, HU.

    Returns:
        ``(cropped_volume, crop_box)``; ``uncrop(array, crop_box, full_shape)`` pastes a result back.

    Raises:
        InputError: naming ``volume.source`` when no body is found.
    """
    box = find_chest_box(volume, margin_mm=margin_mm, threshold_hu=threshold_hu)
    log.debug("chest crop of %s: %s..%s of %s", volume.source, box.start_zyx, box.stop_zyx, box.full_shape_zyx)
    return crop_volume(volume, box), box
