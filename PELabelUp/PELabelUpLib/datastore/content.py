"""What an export stores: the image's content hash, and masks checked against the image's grid.

The content hash identifies an image by its voxels and its grid: SHA-256 over a small JSON header (dtype,
shape ``(Z, Y, X)``, size/spacing/origin/direction as full-precision doubles, LPS mm) followed by the HU
values, C-ordered and little-endian. HU are first brought to the project's canonical type
(:func:`~PELabelUpLib.io.validate.as_hu_array`: ``int16`` when whole numbers in range, else ``float32``), so
the same study loaded as int16 or as integral float32 hashes the same. The geometry enters at full precision:
an image re-read from a NIfTI file (float32 geometry) hashes differently from the original.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import InputError
from ..geometry import Geometry, grid_differences
from ..io import read_label_file
from ..io.validate import as_hu_array
from ..volume import CTVolume

OriginalMaskKind = Literal["pseudomask", "segmentation", "arteries"]
ORIGINAL_MASK_KINDS: tuple[OriginalMaskKind, ...] = ("pseudomask", "segmentation", "arteries")

MaskInput = np.ndarray | tuple[np.ndarray, Geometry] | str | Path
"""A mask: a ``(Z, Y, X)`` array on the image's grid, an ``(array, geometry)`` pair, or a label file path."""

_HASH_CHUNK = 1 << 24


def image_hash(volume: CTVolume) -> str:
    """SHA-256 (64 hex digits) of the volume's HU values and geometry (rules in the module doc)."""
    hu = np.ascontiguousarray(as_hu_array(volume.hu))
    hu = hu.astype(hu.dtype.newbyteorder("<"), copy=False)
    g = volume.geometry
    header = {
        "dtype": hu.dtype.str,
        "shape_zyx": list(hu.shape),
        "size": [int(s) for s in g.size],
        "spacing_mm": [float(s).hex() for s in g.spacing_mm],
        "origin_mm": [float(o).hex() for o in g.origin_mm],
        "direction": [float(d).hex() for d in g.direction],
    }
    digest = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    flat = hu.reshape(-1).view(np.uint8)
    for start in range(0, flat.size, _HASH_CHUNK):
        digest.update(flat[start : start + _HASH_CHUNK].data)
    return digest.hexdigest()


def mask_on_grid(mask: MaskInput, image_geometry: Geometry, *, case_id: str, what: str) -> np.ndarray:
    """The mask as a ``(Z, Y, X)`` array, checked to lie on ``image_geometry``'s grid.

    Args:
        mask: an array (taken to be on the image's grid: only its shape can be checked), an
            ``(array, geometry)`` pair, or a label file (NIfTI/NRRD/MetaImage) whose own grid is checked.
        image_geometry: the image's grid (LPS mm).
        case_id, what: name the case and the mask (``"final mask"``, ``"pseudomask"``) in errors.

    Raises:
        InputError: naming the file (or case and mask) and what differs: shape or geometry.
    """
    geometry: Geometry | None = None
    where, case = f"case {case_id} {what}", ""
    if isinstance(mask, str | Path):
        where, case = str(mask), f" (case {case_id})"
        array, geometry = read_label_file(mask)
    elif isinstance(mask, tuple):
        if len(mask) != 2 or not isinstance(mask[1], Geometry):
            raise TypeError(f"{what}: expected an (array, Geometry) pair, got a tuple of {len(mask)}")
        array, geometry = np.asarray(mask[0]), mask[1]
    else:
        array = np.asarray(mask)
    if array.ndim != 3 or tuple(array.shape) != image_geometry.shape_zyx:
        raise InputError(where, f"{what} shape (Z, Y, X) {tuple(array.shape)} differs from the image's "
                                f"{image_geometry.shape_zyx}{case}")
    if geometry is not None:
        differences = grid_differences(geometry, image_geometry)
        if differences:
            raise InputError(where, f"{what} is not on the image's grid{case}: {'; '.join(differences)}")
    return array


def as_label_map(array: np.ndarray, *, where: str) -> np.ndarray:
    """A label map as ``uint8``: ``bool`` or whole numbers in 0..255 (a corrected mask); else raise."""
    if array.dtype == np.bool_ or array.dtype == np.uint8:
        return array.astype(np.uint8, copy=False)
    if array.size and not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise InputError(where, f"mask of type {array.dtype} is not a label map")
    if array.size:
        lo, hi = float(array.min()), float(array.max())
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0 or hi > 255:
            raise InputError(where, f"label values must lie in 0..255, found {lo:g}..{hi:g}")
        if np.issubdtype(array.dtype, np.floating) and not bool(np.all(np.mod(array, 1) == 0)):
            raise InputError(where, "label values must be whole numbers (found fractions)")
    return array.astype(np.uint8)


def as_stored_mask(array: np.ndarray) -> np.ndarray:
    """An original (model) mask as given; only ``bool`` becomes ``uint8`` (NIfTI has no boolean type)."""
    return array.astype(np.uint8) if array.dtype == np.bool_ else array


def check_original_kinds(masks: Mapping[str, object]) -> None:
    """Every key names a known original mask kind (:data:`ORIGINAL_MASK_KINDS`)."""
    unknown = sorted(set(masks) - set(ORIGINAL_MASK_KINDS))
    if unknown:
        raise ValueError(f"unknown original mask kind(s) {unknown}: expected some of {list(ORIGINAL_MASK_KINDS)}")
