"""``load_ct``: the one loader of the project. It picks the reader from what ``path`` is."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import InputError
from ..volume import CTVolume
from .dicom_reader import load_dicom
from .dicom_scan import is_dicom_candidate
from .image_files import image_extension, read_image_file
from .rspect_reader import is_rspect_root
from .validate import check_exists

SUPPORTED = (
    "NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd), a DICOM file or series folder"
)


def load_ct(
    path: str | Path | Sequence[str | Path],
    *,
    series_uid: str | None = None,
    allow_gaps: bool = False,
) -> CTVolume:
    """Load a CT volume in Hounsfield units from any supported input.

    Args:
        path: a NIfTI/NRRD/MetaImage file; a DICOM folder (searched recursively; an RSPECT study or series
            folder works too), one DICOM file (its series is loaded from its folder), or a list of DICOM
            files holding one series.
        series_uid: DICOM only: load this SeriesInstanceUID instead of choosing the CT series.
        allow_gaps: DICOM only: accept missing slices, filled by interpolation and listed in
            ``meta["slice_gaps"]``/``meta["filled_slices"]``.

    Returns:
        :class:`CTVolume` with ``hu`` ``(Z, Y, X)`` in HU (int16 when integral and in range, else float32),
        its exact geometry (LPS mm) and ``meta`` (``format`` and reader facts).

    Raises:
        InputError: one line naming the file or folder and the reason (not found, unknown format, empty,
            truncated, corrupt, not CT, 2-D, 4-D or multi-component, values not HU, absurd spacing, mixed
            series, missing or unevenly spaced slices, mixed orientations or sizes).
    """
    if not isinstance(path, str | Path):
        return load_dicom(path, series_uid=series_uid, allow_gaps=allow_gaps)
    p = check_exists(path)
    if p.is_dir():
        if is_rspect_root(p):
            raise InputError(
                p,
                "an RSPECT dataset root (train.csv + train/): give one study's folder (train/<StudyInstanceUID>), or "
                "read the dataset with PELabelUpLib.io.read_rspect",
            )
        return load_dicom(p, series_uid=series_uid, allow_gaps=allow_gaps)
    if image_extension(p) is not None:
        if series_uid is not None or allow_gaps:
            raise ValueError("series_uid and allow_gaps apply to DICOM input only")
        return read_image_file(p)
    if is_dicom_candidate(p):
        return load_dicom(p, series_uid=series_uid, allow_gaps=allow_gaps)
    raise InputError(p, f"unknown format: expected {SUPPORTED}")
