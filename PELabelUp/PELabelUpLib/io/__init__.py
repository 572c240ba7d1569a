"""CT input and output: one loader (:func:`load_ct`), the writers, the RSPECT layout and validation.

Every reader returns a :class:`~PELabelUpLib.volume.CTVolume` (HU ``(Z, Y, X)``, geometry in LPS mm) and
refuses bad input with :class:`~PELabelUpLib.errors.InputError` (one line: ``"path: reason"``).
"""

from __future__ import annotations

from ..errors import InputError
from .describe import describe, orientation_code
from .dicom_reader import load_dicom
from .dicom_writer import write_dicom_series
from .image_files import NIFTI_TOLERANCE_DIRECTION, NIFTI_TOLERANCE_MM, read_label_file, write_volume
from .loader import load_ct
from .rspect import (
    RSPECT_COLUMNS,
    STUDY_LABEL_COLUMNS,
    RspectIds,
    append_train_csv,
    complete_study_labels,
    new_rspect_id,
    write_rspect_study,
    write_train_csv,
)
from .rspect_reader import RspectStudy, is_rspect_root, read_rspect

__all__ = [
    "NIFTI_TOLERANCE_DIRECTION",
    "NIFTI_TOLERANCE_MM",
    "RSPECT_COLUMNS",
    "STUDY_LABEL_COLUMNS",
    "InputError",
    "RspectIds",
    "RspectStudy",
    "append_train_csv",
    "complete_study_labels",
    "describe",
    "is_rspect_root",
    "load_ct",
    "load_dicom",
    "new_rspect_id",
    "orientation_code",
    "read_label_file",
    "read_rspect",
    "write_dicom_series",
    "write_rspect_study",
    "write_train_csv",
    "write_volume",
]
