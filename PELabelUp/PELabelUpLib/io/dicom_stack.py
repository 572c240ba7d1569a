"""Order the slices of one DICOM series and derive its exact geometry; detect what breaks a volume.

Slices are sorted by their position along the slice normal ``n = row x column`` (from
ImageOrientationPatient): ``d = ImagePositionPatient . n``. The grid is then

- direction columns ``(row, column, n)`` (orthonormal, oblique when the IOP is),
- spacing ``(column spacing, row spacing, slice step)``; the slice step is fitted to all positions,
- origin = ImagePositionPatient of the first sorted slice.

Checks (each an :class:`InputError` naming the folder, the files and the values):

- one orientation, one image size and one pixel spacing in the series ("mixed orientations or sizes");
- no two slices at the same position;
- **missing slices**: a step larger than 1.5x the median step. With ``allow_gaps=True`` it is recorded in
  ``meta["slice_gaps"]`` instead and the missing grid positions are filled by linear interpolation
  (``meta["filled_slices"]`` lists their k); the gap must then be a whole number of steps;
- **uneven spacing**: a slice farther than ``max(0.06 mm, 5 % of the step)`` from the regular grid (loose
  enough for positions that scanners round to 0.1 mm, tight enough that the grid misplaces no slice);
- slice positions that do not lie on one line (two stacks mixed in one series).

**Gantry/detector tilt** (positions drifting across the slice plane, i.e. not along ``n``) is handled as
3D Slicer does by default: the grid uses the true slice normal ``n`` from the IOP (an oblique but
orthonormal direction) and the slice step measured along ``n``; the tilt angle is reported in
``meta["gantry_tilt_deg"]`` (0.0 without tilt) and the in-plane drift the grid leaves out in
``meta["gantry_tilt_shift_mm"]`` (how far the last slice's true position lies from the grid's). No shear is
built and nothing is resampled; a user who needs exact positions for tilted data must resample
(Slicer's "acquisition geometry regularization").
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..geometry import Geometry
from .dicom_scan import SliceHeader
from .validate import check_grid

log = logging.getLogger(__name__)

GAP_FACTOR = 1.5
DUPLICATE_TOLERANCE_MM = 1e-3
POSITION_TOLERANCE_MM = 0.06
POSITION_TOLERANCE_FRACTION = 0.05
ORIENTATION_TOLERANCE = 1e-4
TILT_DRIFT_TOLERANCE_MM = 0.05
LINE_TOLERANCE_MM = 0.5


@dataclass
class SliceStack:
    """The sorted slices of a series on a regular grid.

    Attributes:
        headers: the real slices, sorted along the normal.
        grid_index: grid slice ``k`` of each sorted header (``0..Z-1``, increasing; equal to ``range`` when
            nothing is missing).
        geometry: the grid, LPS mm.
        meta: facts for :attr:`CTVolume.meta` (tilt, gaps, filled slices).
    """

    headers: list[SliceHeader]
    grid_index: list[int]
    geometry: Geometry
    meta: dict[str, Any] = field(default_factory=dict)


def _require(where: Path, headers: Sequence[SliceHeader]) -> None:
    for h in headers:
        missing = [
            name
            for name, value in (
                ("ImagePositionPatient", h.position),
                ("ImageOrientationPatient", h.orientation),
                ("PixelSpacing", h.pixel_spacing),
                ("Rows", h.rows),
                ("Columns", h.columns),
            )
            if value is None
        ]
        if missing:
            raise InputError(h.path, f"missing {', '.join(missing)}: cannot place the slice in space")
        if h.n_frames > 1:
            raise InputError(
                h.path,
                f"multi-frame DICOM ({h.n_frames} frames) is not supported; expected one slice per file",
            )


def _check_uniform(where: Path, headers: Sequence[SliceHeader]) -> None:
    first = headers[0]
    for h in headers[1:]:
        if not np.allclose(h.orientation, first.orientation, atol=ORIENTATION_TOLERANCE):  # type: ignore[arg-type]
            raise InputError(
                where,
                f"mixed orientations in one series: ImageOrientationPatient {_fmt(first.orientation)} in "
                f"{first.path.name} vs {_fmt(h.orientation)} in {h.path.name}",
            )
        if (h.rows, h.columns) != (first.rows, first.columns):
            raise InputError(
                where,
                f"mixed image sizes in one series: {first.rows}x{first.columns} in {first.path.name} vs "
                f"{h.rows}x{h.columns} in {h.path.name}",
            )
        if not np.allclose(h.pixel_spacing, first.pixel_spacing, atol=1e-4):  # type: ignore[arg-type]
            raise InputError(
                where,
                f"mixed pixel spacings in one series: {_fmt(first.pixel_spacing)} in {first.path.name} vs "
                f"{_fmt(h.pixel_spacing)} in {h.path.name}",
            )


def _fmt(values: Sequence[float] | None) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in values or ()) + ")"


def _axes(where: Path, orientation: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    iop = np.asarray(orientation, dtype=float)
    row, col = iop[:3], iop[3:]
    if np.linalg.norm(row) < 1e-3 or np.linalg.norm(col) < 1e-3:
        raise InputError(where, f"invalid ImageOrientationPatient {_fmt(iop)}: zero-length direction")
    row, col = row / np.linalg.norm(row), col / np.linalg.norm(col)
    if abs(float(row @ col)) > 1e-3:
        raise InputError(
            where, f"invalid ImageOrientationPatient {_fmt(iop)}: row and column are not perpendicular"
        )
    col = col - (row @ col) * row
    col /= np.linalg.norm(col)
    normal = np.cross(row, col)
    return row, col, normal / np.linalg.norm(normal)


def build_stack(where: Path, headers: Sequence[SliceHeader], *, allow_gaps: bool = False) -> SliceStack:
    """Sort ``headers`` along the slice normal and derive the grid (see the module docstring).

    Args:
        where: the folder (or file) named in errors.
        headers: the slices of one series (at least two positions).
        allow_gaps: record missing slices (and fill them) instead of refusing the series.
    """
    _require(where, headers)
    _check_uniform(where, headers)
    row, col, normal = _axes(where, headers[0].orientation)  # type: ignore[arg-type]
    positions = np.array([h.position for h in headers], dtype=float)
    along = positions @ normal
    order = np.lexsort(([h.instance_number or 0 for h in headers], along))
    headers = [headers[i] for i in order]
    positions, along = positions[order], along[order]
    steps = np.diff(along)
    names = [h.path.name for h in headers]
    dup = np.flatnonzero(steps < DUPLICATE_TOLERANCE_MM)
    if dup.size:
        i = int(dup[0])
        raise InputError(
            where,
            f"duplicate slice position {along[i]:.4f} mm along the normal: {names[i]} and {names[i + 1]}",
        )
    median = float(np.median(steps))
    tolerance = max(POSITION_TOLERANCE_MM, POSITION_TOLERANCE_FRACTION * median)
    gaps = np.flatnonzero(steps > GAP_FACTOR * median)
    if gaps.size and not allow_gaps:
        i = int(gaps[0])
        raise InputError(
            where,
            f"missing slice(s): gap of {steps[i]:.3f} mm between {names[i]} (at {along[i]:.3f} mm) and "
            f"{names[i + 1]} (at {along[i + 1]:.3f} mm), median step {median:.3f} mm"
            + (f"; {gaps.size} gaps in all" if gaps.size > 1 else "")
            + " (export the complete series; in Python, load_ct(..., allow_gaps=True) fills the gaps)",
        )
    regular = steps[steps <= GAP_FACTOR * median]
    grid = np.concatenate([[0], np.cumsum(np.rint(steps / median).astype(int))])
    step = _fit_step(along - along[0], grid)
    residual = np.abs(along - along[0] - grid * step)
    worst = int(np.argmax(residual))
    if residual[worst] > tolerance:
        raise InputError(
            where,
            f"unevenly spaced slices: steps range {regular.min():.4f}..{regular.max():.4f} mm (median "
            f"{median:.4f}); {names[worst]} lies {residual[worst]:.4f} mm off the regular grid "
            f"(tolerance {tolerance:.3f} mm)",
        )
    spacing = (float(headers[0].pixel_spacing[1]), float(headers[0].pixel_spacing[0]), step)  # type: ignore[index]
    check_grid(where, (headers[0].columns, headers[0].rows, int(grid[-1]) + 1), spacing)
    meta = _tilt_meta(where, positions, along, normal, step)
    if gaps.size:
        meta["slice_gaps"] = [
            {"after_file": names[i], "gap_mm": float(steps[i]), "n_missing": int(grid[i + 1] - grid[i] - 1)}
            for i in gaps
        ]
        present = set(grid.tolist())
        meta["filled_slices"] = [k for k in range(int(grid[-1]) + 1) if k not in present]
        log.warning("%s: %d missing slice(s) filled by interpolation", where, len(meta["filled_slices"]))
    direction = np.column_stack([row, col, normal])
    geometry = Geometry(
        size=(int(headers[0].columns), int(headers[0].rows), int(grid[-1]) + 1),  # type: ignore[arg-type]
        spacing_mm=spacing,
        origin_mm=tuple(float(v) for v in positions[0]),  # type: ignore[arg-type]
        direction=tuple(float(v) for v in direction.ravel()),
    )
    return SliceStack(headers=list(headers), grid_index=[int(k) for k in grid], geometry=geometry, meta=meta)


def _fit_step(offsets: np.ndarray, grid: np.ndarray) -> float:
    """Least-squares slope of ``offsets = grid * step`` (a line through the first slice)."""
    return float((offsets @ grid) / (grid @ grid))


def _tilt_meta(
    where: Path, positions: np.ndarray, along: np.ndarray, normal: np.ndarray, step: float
) -> dict[str, Any]:
    """Gantry tilt: the in-plane drift of the slice positions, which must lie on one line."""
    rel = positions - positions[0]
    in_plane = rel - np.outer(rel @ normal, normal)
    length = float(along[-1] - along[0])
    drift = in_plane[-1]
    expected = np.outer((along - along[0]) / length, drift)
    off_line = np.linalg.norm(in_plane - expected, axis=1)
    if float(off_line.max()) > max(LINE_TOLERANCE_MM, step):
        raise InputError(
            where,
            f"slice positions do not lie on one line: a slice is {off_line.max():.2f} mm off the line through the "
            "first and last slice (two stacks mixed in one series?)",
        )
    shift = float(np.linalg.norm(drift))
    if shift <= TILT_DRIFT_TOLERANCE_MM:
        return {"gantry_tilt_deg": 0.0}
    tilt = math.degrees(math.atan2(shift, length))
    log.warning(
        "%s: gantry/detector tilt of %.2f deg; the grid follows the slice normal and leaves out an in-plane drift of %.2f mm",
        where, tilt, shift,
    )  # fmt: skip
    return {"gantry_tilt_deg": tilt, "gantry_tilt_shift_mm": shift}
