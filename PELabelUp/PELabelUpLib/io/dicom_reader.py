"""Read a DICOM CT series into a :class:`CTVolume` in HU.

Discovery and series choice live in :mod:`.dicom_scan`, ordering and geometry in :mod:`.dicom_stack`;
this module decodes pixels (pydicom; SimpleITK/GDCM for compressed transfer syntaxes pydicom cannot decode
here), applies each slice's RescaleSlope/RescaleIntercept and validates the values (:mod:`.validate`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import SimpleITK as sitk

from ..errors import InputError
from ..volume import CTVolume
from .dicom_scan import (
    SliceHeader,
    choose_series,
    find_dicom_files,
    group_series,
    is_dicom_candidate,
    quiet_pydicom,
    read_header,
    read_headers,
)
from .dicom_stack import SliceStack, build_stack
from .validate import as_hu_array, check_hu

log = logging.getLogger(__name__)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def _decode(header: SliceHeader, with_facts: bool = False) -> tuple[np.ndarray, float, float, dict[str, Any]]:
    """Stored pixels ``(rows, columns)`` of one file, the slope and intercept that turn them into HU, and
    (``with_facts``) a few header facts. Compressed data pydicom cannot decode here goes through GDCM, which
    returns HU already (slope 1, intercept 0 then)."""
    path = header.path
    slope, intercept = header.rescale_slope, header.rescale_intercept
    facts: dict[str, Any] = {}
    try:
        with quiet_pydicom(path):
            ds = pydicom.dcmread(path, force=True)
            if "PixelData" not in ds:
                raise InputError(path, "no pixel data in the DICOM file")
            if with_facts:
                facts = {
                    "slice_thickness_mm": _maybe_float(ds.get("SliceThickness")),
                    "kvp": _maybe_float(ds.get("KVP")),
                    "exposure_mas": _maybe_float(ds.get("Exposure")),
                    "patient_id": str(ds.get("PatientID", "")),
                }
            try:
                pixels = ds.pixel_array
                facts["pixel_decoder"] = "pydicom"
            except (NotImplementedError, RuntimeError) as exc:
                if not ds.file_meta.TransferSyntaxUID.is_compressed:
                    raise
                log.debug("%s: pydicom cannot decode (%s); trying GDCM", path, exc)
                pixels = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))[0]
                slope, intercept = 1.0, 0.0
                facts["pixel_decoder"] = "gdcm"
    except InputError:
        raise
    except Exception as exc:  # corrupt or truncated files raise many types in pydicom and GDCM
        raise InputError(path, f"unreadable pixel data ({type(exc).__name__}: {_first_line(exc)})") from None
    if pixels.shape != (header.rows, header.columns):
        raise InputError(
            path,
            f"pixel array of shape {pixels.shape} does not match Rows x Columns {header.rows}x{header.columns}",
        )
    if not (np.isfinite(slope) and np.isfinite(intercept)) or slope == 0:
        raise InputError(path, f"invalid rescale: slope {slope}, intercept {intercept}")
    return pixels, slope, intercept, facts


def _maybe_float(value: Any) -> float | None:
    try:
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None


def _assemble(stack: SliceStack) -> tuple[np.ndarray, dict[str, Any]]:
    """HU ``(Z, Y, X)`` on the stack's grid, filled slice by slice (int32 while every value is a whole number,
    else float64); missing grid slices are interpolated between their neighbours."""
    integral = all(h.rescale_slope == 1.0 and float(h.rescale_intercept).is_integer() for h in stack.headers)
    hu = np.empty(stack.geometry.shape_zyx, dtype=np.int32 if integral else np.float64)
    facts: dict[str, Any] = {}
    decoders: set[str] = set()
    for n, (k, header) in enumerate(zip(stack.grid_index, stack.headers, strict=True)):
        pixels, slope, intercept, slice_facts = _decode(header, with_facts=n == 0)
        facts = facts or dict(slice_facts)
        decoders.add(slice_facts["pixel_decoder"])
        if integral and not (
            np.issubdtype(pixels.dtype, np.integer) and slope == 1.0 and float(intercept).is_integer()
        ):
            hu, integral = hu.astype(np.float64), False
        hu[k] = (
            pixels.astype(np.int32) + int(intercept)
            if integral
            else pixels.astype(np.float64) * slope + intercept
        )
    grid = stack.grid_index
    for lo, hi in zip(grid[:-1], grid[1:], strict=True):
        for k in range(lo + 1, hi):
            w = (k - lo) / (hi - lo)
            filled = (1 - w) * hu[lo].astype(np.float64) + w * hu[hi].astype(np.float64)
            hu[k] = np.rint(filled) if integral else filled
    facts["pixel_decoder"] = "+".join(sorted(decoders))
    return hu, facts


def load_dicom_series(
    headers: Sequence[SliceHeader],
    where: Path,
    *,
    allow_gaps: bool = False,
    other_series: list[dict[str, Any]] | None = None,
    ignored_files: int = 0,
) -> CTVolume:
    """Load one series from its headers (all of one SeriesInstanceUID, already chosen)."""
    stack = build_stack(where, headers, allow_gaps=allow_gaps)
    values, facts = _assemble(stack)
    hu_warnings = check_hu(where, values)
    first = stack.headers[0]
    sop_uids: list[str | None] = [None] * stack.geometry.shape_zyx[0]
    files: list[str | None] = [None] * stack.geometry.shape_zyx[0]
    for k, h in zip(stack.grid_index, stack.headers, strict=True):
        sop_uids[k], files[k] = h.sop_uid, str(h.path)
    meta: dict[str, Any] = {
        "format": "DICOM",
        "modality": first.modality,
        "study_uid": first.study_uid,
        "series_uid": first.series_uid,
        "series_description": first.series_description,
        "n_files": len(stack.headers),
        "sop_uids": sop_uids,
        "files": files,
        **facts,
        **stack.meta,
        "other_series": other_series or [],
        "ignored_files": ignored_files,
        "hu_warnings": hu_warnings,
    }
    return CTVolume(hu=as_hu_array(values), geometry=stack.geometry, source=str(where), meta=meta)


def load_dicom(
    path: str | Path | Sequence[str | Path],
    *,
    series_uid: str | None = None,
    allow_gaps: bool = False,
) -> CTVolume:
    """Load a DICOM CT series from a folder (searched recursively), one file of it, or a list of files.

    - A folder may hold several series: the CT series with most slices is chosen (localizers, 2-D and
      non-CT series are skipped and described in ``meta["other_series"]``); ``series_uid`` picks one.
    - A single file loads the series it belongs to from its folder (not recursively).
    - A list of files must hold exactly one series ("mixed series given as one file list" otherwise).

    Returns:
        :class:`CTVolume`: ``hu`` ``(Z, Y, X)`` in HU, k sorted along the slice normal; geometry in LPS mm
        (see :mod:`.dicom_stack`); ``meta`` with uids, ``sop_uids``/``files`` in k order, tilt and gaps.

    Raises:
        InputError: every refusal listed in :mod:`.dicom_scan`, :mod:`.dicom_stack` and :mod:`.validate`.
    """
    if isinstance(path, str | Path):
        p = Path(path)
        if not p.exists():
            raise InputError(p, "file or folder not found")
        if p.is_dir():
            files, ignored = find_dicom_files(p)
            if not files:
                raise InputError(p, f"no DICOM files found ({ignored} other files)")
            groups = group_series(read_headers(files))
            chosen, others = choose_series(p, groups, series_uid)
            return load_dicom_series(
                chosen.headers, p, allow_gaps=allow_gaps, other_series=others, ignored_files=ignored
            )
        header = read_header(p)
        siblings = [f for f in sorted(p.parent.iterdir()) if f.is_file() and f != p]
        same = [header] + [
            h
            for h in read_headers(f for f in siblings if is_dicom_candidate(f))
            if h.series_uid == header.series_uid
        ]
        groups = group_series(same)
        chosen, _ = choose_series(p, groups, series_uid or header.series_uid)
        return load_dicom_series(chosen.headers, p.parent, allow_gaps=allow_gaps)
    paths = [Path(f) for f in path]
    if not paths:
        raise InputError("(empty file list)", "no DICOM files given")
    for f in paths:
        if not f.is_file():
            raise InputError(f, "file not found")
    groups = group_series(read_headers(paths))
    where = paths[0].parent
    if len(groups) > 1 and series_uid is None:
        listed = ", ".join(f"{g.series_uid} ({g.modality}, {len(g.headers)} files)" for g in groups)
        raise InputError(where, f"mixed series given as one file list: {len(groups)} series ({listed})")
    chosen, _ = choose_series(where, groups, series_uid)
    return load_dicom_series(chosen.headers, where, allow_gaps=allow_gaps)
