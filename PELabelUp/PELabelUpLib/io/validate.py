"""Checks shared by every reader: each raises :class:`InputError` naming the file and the reason, on one line.

The rules for "is this a CT in Hounsfield units" (:func:`check_hu`) are deliberately simple and documented,
so that a user can tell why a file was refused:

1. An 8-bit or boolean pixel type (``uint8``, ``int8``, ``bool``) cannot hold HU: refused (a picture or a mask).
2. NaN or infinite values: refused.
3. Every value in ``0..255``: refused, it looks like an 8-bit picture or mask (a CT has air near -1000 HU).
4. A value range narrower than :data:`MIN_HU_RANGE` (100 HU): refused (normalised intensities such as
   ``-1..1`` or z-scores).
5. No air or fat: refused when 99.5 % of the values lie above :data:`NO_AIR_OR_FAT_HU` (-50 HU). A CT volume
   holds fat (about -100 HU) or air (-1000 HU); without them it is almost always raw stored values missing
   the rescale intercept (air near 0, tissue near 1024; noise may dip a little below 0). A percentile, not
   the minimum, so that a few noisy voxels decide nothing. The cost: a crop lying entirely inside the heart
   or a vessel is refused too.
6. Values outside ``-32768..65535``: refused, no CT scale reaches them.

A volume whose minimum is above :data:`AIR_WARNING_HU` (-500 HU) passes with a warning in
``meta["hu_warnings"]``: it holds no air, which is legal (a crop inside the mediastinum) but worth a look.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError

log = logging.getLogger(__name__)

MIN_SPACING_MM = 0.1
MAX_SPACING_MM = 20.0
#: the largest field of view (mm) a CT can have: across (two axes; scanners reconstruct at most about 700-800 mm)
#: and along the table (one axis; a whole body is about 2 m), whichever file axes these are (axial, coronal or
#: sagittal storage)
MAX_EXTENT_MM = (1000.0, 1000.0, 2500.0)
MIN_HU_RANGE = 100.0
NO_AIR_OR_FAT_HU = -50.0
NO_AIR_OR_FAT_PERCENTILE = 0.5
PERCENTILE_SAMPLE = 2_000_000
AIR_WARNING_HU = -500.0
HU_LIMITS = (-32768.0, 65535.0)
NOT_HU_PIXEL_TYPES = ("uint8", "int8", "bool")
RSPECT_ID = re.compile(r"^[0-9a-f]{12}$")


def check_exists(path: str | Path) -> Path:
    """The path exists and, for a file, is not empty. Returns it as a :class:`Path`."""
    p = Path(path)
    if not p.exists():
        raise InputError(p, "file or folder not found")
    if p.is_file() and p.stat().st_size == 0:
        raise InputError(p, "empty file (0 bytes)")
    return p


def check_spacing(path: str | Path, spacing_mm: Sequence[float], what: str = "voxel spacing") -> None:
    """Every spacing (mm) is finite and within ``MIN_SPACING_MM..MAX_SPACING_MM`` (0.1..20 mm)."""
    values = [float(s) for s in spacing_mm]
    shown = "(" + ", ".join(f"{s:g}" for s in values) + ") mm"
    if any(not np.isfinite(s) or s <= 0 for s in values):
        raise InputError(path, f"invalid {what} {shown}: every spacing must be a positive number")
    if any(s < MIN_SPACING_MM or s > MAX_SPACING_MM for s in values):
        raise InputError(
            path, f"absurd {what} {shown}: each must lie within {MIN_SPACING_MM:g}..{MAX_SPACING_MM:g} mm"
        )


def check_extent(path: str | Path, size_xyz: Sequence[int], spacing_mm: Sequence[float]) -> None:
    """The grid's field of view (voxels x spacing, per axis) fits a CT scanner (:data:`MAX_EXTENT_MM`; the
    longest axis is taken as along the table, whatever the storage orientation): a spacing allowed on its own can
    still make a body metres wide, which no analysis should try to resample."""
    extent = [int(n) * float(s) for n, s in zip(size_xyz[:3], spacing_mm[:3], strict=True)]
    if any(e > limit for e, limit in zip(sorted(extent), MAX_EXTENT_MM, strict=True)):
        shown = " x ".join(f"{e:g}" for e in extent)
        raise InputError(path, f"field of view {shown} mm is larger than any CT's (at most "
                               f"{MAX_EXTENT_MM[0]:g} mm across, {MAX_EXTENT_MM[2]:g} mm along the table): wrong spacing?")


def check_grid(path: str | Path, size_xyz: Sequence[int], spacing_mm: Sequence[float], *, dimension: int = 3,
               components: int = 1) -> None:
    """The grid rules of every reader, in order: :func:`check_volume_shape`, :func:`check_spacing` (of the first
    three axes) and :func:`check_extent`."""
    check_volume_shape(path, size_xyz, dimension=dimension, components=components)
    check_spacing(path, spacing_mm[:3])
    check_extent(path, size_xyz[:3], spacing_mm[:3])


def check_volume_shape(
    path: str | Path, size_xyz: Sequence[int], *, dimension: int = 3, components: int = 1
) -> None:
    """A single-component 3-D image with at least two voxels along every axis.

    Args:
        size_xyz: voxels along (x, y, z) as the file declares them (any length: 2-D and 4-D files too).
        dimension: the image dimension the file declares.
        components: values per voxel (3 for an RGB picture, N for a vector image).
    """
    size = tuple(int(s) for s in size_xyz)
    shown = "x".join(str(s) for s in size)
    if components != 1:
        raise InputError(
            path,
            f"multi-component image ({components} values per voxel, size {shown}): expected a scalar CT volume",
        )
    if dimension > 3:
        extra = [s for s in size[3:] if s > 1]
        if extra:
            raise InputError(path, f"{dimension}-D image (size {shown}): expected a single 3-D CT volume")
        size = size[:3]
    if dimension < 3 or len(size) < 3:
        raise InputError(path, f"2-D image (size {shown}): expected a 3-D CT volume")
    if any(s < 2 for s in size):
        raise InputError(path, f"2-D image (size {shown}, a single slice): expected a 3-D CT volume")


def check_modality(path: str | Path, modality: str) -> None:
    """The DICOM Modality is CT."""
    if modality.strip().upper() != "CT":
        shown = modality.strip() or "(empty)"
        raise InputError(path, f"not CT: Modality is {shown}, expected CT")


def as_hu_array(values: np.ndarray) -> np.ndarray:
    """Values in HU -> ``int16`` when every value is a whole number within int16, else ``float32``.

    Works on any shape; the array is returned unchanged when it is already int16.
    """
    if values.dtype == np.int16:
        return values
    if values.size == 0:
        return values.astype(np.int16)
    lo, hi = float(values.min()), float(values.max())
    in_range = lo >= -32768 and hi <= 32767
    if np.issubdtype(values.dtype, np.integer) or values.dtype == np.bool_:
        return values.astype(np.int16) if in_range else values.astype(np.float32)
    if in_range and np.isfinite(lo) and np.isfinite(hi) and bool(np.all(np.mod(values, 1) == 0)):
        return values.astype(np.int16)
    return values.astype(np.float32)


def check_hu(path: str | Path, hu: np.ndarray, *, pixel_type: str | None = None) -> list[str]:
    """Refuse values that are not Hounsfield units (rules in the module docstring).

    Args:
        hu: the volume's values after any rescale, any shape.
        pixel_type: the numpy name of the *stored* pixel type (``"uint8"``...), when the format has one.

    Returns:
        warnings (strings) for legal but unusual volumes, e.g. no air.
    """
    if pixel_type is not None and pixel_type in NOT_HU_PIXEL_TYPES:
        raise InputError(
            path,
            f"pixel type {pixel_type} cannot hold Hounsfield units: this looks like a picture or a mask, not a CT",
        )
    if hu.size == 0:
        raise InputError(path, "image holds no voxels")
    if np.issubdtype(hu.dtype, np.floating) and not bool(np.all(np.isfinite(hu))):
        raise InputError(path, "values include NaN or infinity: not Hounsfield units")
    lo, hi = float(hu.min()), float(hu.max())
    shown = f"{lo:g}..{hi:g}"
    if lo >= 0 and hi <= 255:
        raise InputError(
            path,
            f"values {shown} look like an 8-bit picture or mask, not Hounsfield units (a CT has air near -1000 HU)",
        )
    if hi - lo < MIN_HU_RANGE:
        raise InputError(
            path,
            f"value range {shown} is narrower than {MIN_HU_RANGE:g}: normalised intensities, not Hounsfield units",
        )
    flat = hu.reshape(-1)
    sample = flat[:: max(1, flat.size // PERCENTILE_SAMPLE)]
    if float(np.percentile(sample, NO_AIR_OR_FAT_PERCENTILE)) >= NO_AIR_OR_FAT_HU:
        raise InputError(
            path,
            f"no air or fat: {100 - NO_AIR_OR_FAT_PERCENTILE:g}% of values lie above {NO_AIR_OR_FAT_HU:g} (range {shown}), "
            "not Hounsfield units (a CT holds fat near -100 HU and air near -1000 HU); "
            "raw stored values without the rescale intercept?",
        )
    if lo < HU_LIMITS[0] or hi > HU_LIMITS[1]:
        raise InputError(
            path, f"values {shown} lie outside any CT scale ({HU_LIMITS[0]:g}..{HU_LIMITS[1]:g} HU)"
        )
    hu_warnings: list[str] = []
    if lo > AIR_WARNING_HU:
        hu_warnings.append(f"no value below {AIR_WARNING_HU:g} HU (minimum {lo:g}): the volume holds no air")
        log.warning("%s: %s", path, hu_warnings[-1])
    return hu_warnings


def check_rspect_id(path: str | Path, value: str, what: str) -> str:
    """An RSPECT identifier: 12 lowercase hexadecimal characters (``00268ff88746``)."""
    if not RSPECT_ID.match(value):
        raise InputError(path, f"{what} {value!r} is not an RSPECT id (12 lowercase hexadecimal characters)")
    return value


def check_binary_label(path: str | Path, value: str, where: str) -> int:
    """A label cell holding ``0`` or ``1`` (as text) -> the int."""
    text = value.strip()
    if text not in ("0", "1"):
        raise InputError(path, f"{where}: label value {value!r} is not 0 or 1")
    return int(text)
