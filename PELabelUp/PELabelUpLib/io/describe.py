"""``describe(path)``: the facts ``pelabelup info`` prints about an input, as the loader sees it.

The result is a JSON-friendly dict (str, int, float, list, dict, None). Keys by input:

- every loadable volume: ``kind`` ("volume"), ``path``, ``format``, ``size`` (voxels along x, y, z),
  ``shape_zyx``, ``spacing_mm``, ``origin_mm`` (LPS), ``direction`` (9 floats, row-major, columns = the
  i, j, k axes in LPS), ``orientation`` (axis code such as "LPS" = i toward Left, j toward Posterior, k
  toward Superior, or "oblique"), ``orientation_nearest`` (the closest axis code), ``extent_mm``, ``dtype``,
  ``hu_min``, ``hu_max``, ``hu_percentiles`` ({"1": .., "5": .., "50": .., "95": .., "99": ..}; from a
  regular subsample of at most :data:`PERCENTILE_SAMPLE` voxels), ``warnings`` and, for DICOM,
  ``series_uid``, ``study_uid``, ``modality``, ``series_description``, ``gantry_tilt_deg`` (and
  ``gantry_tilt_shift_mm``), ``slice_gaps``/``filled_slices`` when present;
- a DICOM folder: also ``series`` (uid, modality, slice count, description, ``chosen``) and, when no
  series can be loaded, ``error`` (the loader's one-line message) instead of the volume facts;
- an RSPECT root: ``kind`` ("rspect"), ``n_studies``, ``n_series``, ``n_slices``, ``n_positive_slices``,
  ``n_pe_positive_studies``, ``n_negative_studies``, ``n_indeterminate_studies``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..volume import CTVolume
from .dicom_reader import load_dicom_series
from .dicom_scan import choose_series, find_dicom_files, group_series, read_headers
from .loader import load_ct
from .rspect_reader import is_rspect_root, read_rspect
from .validate import check_exists

PERCENTILE_SAMPLE = 8_000_000
POSITIVE_AXES = "LPS"
NEGATIVE_AXES = "RAI"


def orientation_code(direction: Sequence[float], *, tol: float = 1e-6, nearest: bool = False) -> str:
    """Axis code of a direction (row-major 3x3, columns = LPS directions of i, j, k).

    ``"LPS"`` for the identity: i points Left, j Posterior, k Superior; negated axes read R, A, I.
    Returns ``"oblique"`` when a column is off an axis by more than ``tol``, unless ``nearest``.
    """
    matrix = np.asarray(direction, dtype=float).reshape(3, 3)
    letters = []
    for c in range(3):
        column = matrix[:, c]
        axis = int(np.argmax(np.abs(column)))
        off = np.delete(column, axis)
        if not nearest and np.any(np.abs(off) > tol):
            return "oblique"
        letters.append(POSITIVE_AXES[axis] if column[axis] > 0 else NEGATIVE_AXES[axis])
    return "".join(letters)


def volume_facts(volume: CTVolume) -> dict[str, Any]:
    """Size, geometry and HU statistics of a loaded volume."""
    g = volume.geometry
    hu = volume.hu
    stride = max(1, int(np.ceil((hu.size / PERCENTILE_SAMPLE) ** (1 / 3))))
    sample = hu[::stride, ::stride, ::stride]
    percentiles = np.percentile(sample, [1, 5, 50, 95, 99])
    meta = volume.meta
    facts: dict[str, Any] = {
        "kind": "volume",
        "path": volume.source,
        "format": meta.get("format", ""),
        "size": list(g.size),
        "shape_zyx": list(g.shape_zyx),
        "spacing_mm": [float(s) for s in g.spacing_mm],
        "origin_mm": [float(o) for o in g.origin_mm],
        "direction": [float(d) for d in g.direction],
        "orientation": orientation_code(g.direction),
        "orientation_nearest": orientation_code(g.direction, nearest=True),
        "extent_mm": [float(n * s) for n, s in zip(g.size, g.spacing_mm, strict=True)],
        "dtype": hu.dtype.name,
        "hu_min": float(hu.min()),
        "hu_max": float(hu.max()),
        "hu_percentiles": {str(q): float(v) for q, v in zip((1, 5, 50, 95, 99), percentiles, strict=True)},
        "warnings": list(meta.get("hu_warnings", [])),
    }
    for key in (
        "series_uid",
        "study_uid",
        "modality",
        "series_description",
        "gantry_tilt_deg",
        "gantry_tilt_shift_mm",
        "slice_gaps",
        "filled_slices",
    ):
        if key in meta:
            facts[key] = meta[key]
    return facts


def _describe_dicom_folder(folder: Path) -> dict[str, Any]:
    files, ignored = find_dicom_files(folder)
    if not files:
        raise InputError(folder, f"no DICOM files found ({ignored} other files)")
    groups = group_series(read_headers(files))
    info: dict[str, Any] = {"kind": "dicom", "path": str(folder), "format": "DICOM", "ignored_files": ignored}
    chosen_uid = None
    try:
        chosen, others = choose_series(folder, groups)
        chosen_uid = chosen.series_uid
        volume = load_dicom_series(chosen.headers, folder, other_series=others, ignored_files=ignored)
        info.update(volume_facts(volume))
        info["kind"] = "dicom"
    except InputError as exc:
        info["error"] = str(exc)
    info["series"] = [{**g.describe(), "chosen": g.series_uid == chosen_uid} for g in groups]
    return info


def _describe_rspect(root: Path) -> dict[str, Any]:
    studies = read_rspect(root, sort_slices=False)
    return {
        "kind": "rspect",
        "path": str(root),
        "format": "RSPECT",
        "n_studies": len({s.study_uid for s in studies}),
        "n_series": len(studies),
        "n_slices": sum(len(s.sop_uids) for s in studies),
        "n_positive_slices": sum(s.n_positive_slices for s in studies),
        "n_pe_positive_studies": sum(s.is_pe_positive for s in studies),
        "n_negative_studies": sum(bool(s.study_labels["negative_exam_for_pe"]) for s in studies),
        "n_indeterminate_studies": sum(bool(s.study_labels["indeterminate"]) for s in studies),
    }


def describe(path: str | Path) -> dict[str, Any]:
    """What the loader sees at ``path`` (keys in the module docstring).

    Raises:
        InputError: the input cannot be read at all (for a DICOM folder whose series exist but cannot be
            loaded, the reason is returned in ``error`` with the list of series instead).
    """
    p = check_exists(path)
    if is_rspect_root(p):
        return _describe_rspect(p)
    if p.is_dir():
        return _describe_dicom_folder(p)
    return volume_facts(load_ct(p))
