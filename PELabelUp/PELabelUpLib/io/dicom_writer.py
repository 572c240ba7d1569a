"""Write a :class:`CTVolume` as a real DICOM CT series with pydicom: one file per axial slice.

Storage convention (documented, and what :func:`load_ct` undoes):

- CT Image Storage, Explicit VR Little Endian, MONOCHROME2, 16 bits allocated/stored.
- ``RescaleSlope = 1``, ``RescaleIntercept = -1024``: the stored value is ``HU + 1024``. It is stored as
  **uint16** (PixelRepresentation 0) when every HU is >= -1024 (the usual case), else as **int16**
  (PixelRepresentation 1, e.g. padding at -2000 or -3024 HU). Non-integral HU are rounded (logged).
- Slice ``k`` (numpy ``hu[k]``) lies at ``ImagePositionPatient = origin + k * spacing_z * direction[:, 2]``;
  ``ImageOrientationPatient`` holds the first two direction columns (i then j, LPS);
  ``PixelSpacing = [spacing_y, spacing_x]`` (DICOM order: row spacing first);
  ``SliceThickness = SpacingBetweenSlices = spacing_z``; ``SliceLocation = position . normal``.

Readers sort slices along ``normal = row x column``. A right-handed direction (det +1) therefore reads back
identically; a left-handed one (k axis against the normal) reads back flipped along k, the same physical image
on the mirrored index order (logged as a warning here).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom import config as dicom_config
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

from ..volume import CTVolume

log = logging.getLogger(__name__)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
RESCALE_INTERCEPT_HU = -1024
PE_WINDOW_CENTER_HU = 100
PE_WINDOW_WIDTH_HU = 700
DEFAULT_STUDY_DATE = "20200101"
DEFAULT_STUDY_TIME = "120000"
DEFAULT_KVP = 100
DEFAULT_EXPOSURE_MAS = 200


def _ds(value: float) -> str:
    """A float as a DICOM decimal string of at most 16 characters, at the best precision that fits."""
    return format_number_as_ds(float(value))


def stored_pixels(hu: np.ndarray) -> tuple[np.ndarray, int]:
    """HU ``(Z, Y, X)`` -> (stored values ``HU + 1024`` as uint16 or int16, PixelRepresentation 0 or 1)."""
    values = np.asarray(hu)
    if not np.issubdtype(values.dtype, np.integer):
        rounded = np.rint(values)
        if not np.array_equal(rounded, values):
            log.warning("HU values are not whole numbers: DICOM stores integers, rounding them")
        values = rounded
    shifted = values.astype(np.int64) - RESCALE_INTERCEPT_HU
    lo, hi = int(shifted.min()), int(shifted.max())
    if lo >= 0 and hi <= 65535:
        return shifted.astype(np.uint16), 0
    if lo >= -32768 and hi <= 32767:
        return shifted.astype(np.int16), 1
    raise ValueError(
        f"HU range {lo + RESCALE_INTERCEPT_HU}..{hi + RESCALE_INTERCEPT_HU} does not fit 16-bit storage"
    )


def _file_meta(sop_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    return meta


def _series_dataset(
    volume: CTVolume,
    *,
    study_uid: str,
    series_uid: str,
    frame_uid: str,
    patient_id: str,
    patient_name: str,
    pixel_representation: int,
    series_description: str,
) -> Dataset:
    """The attributes shared by every slice of the series."""
    g = volume.geometry
    sx, sy, sz = (float(s) for s in g.spacing_mm)
    d = g.direction_matrix
    ds = Dataset()
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = DEFAULT_STUDY_DATE
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = DEFAULT_STUDY_TIME
    ds.AccessionNumber = ""
    ds.Modality = "CT"
    ds.Manufacturer = "PELabelUp"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "CT pulmonary angiography"
    ds.SeriesDescription = series_description
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.BodyPartExamined = "CHEST"
    ds.SliceThickness = _ds(sz)
    ds.SpacingBetweenSlices = _ds(sz)
    ds.KVP = _ds(DEFAULT_KVP)
    ds.Exposure = DEFAULT_EXPOSURE_MAS
    ds.XRayTubeCurrent = DEFAULT_EXPOSURE_MAS
    ds.ConvolutionKernel = "STANDARD"
    ds.PatientPosition = "FFS"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.AcquisitionNumber = 1
    ds.FrameOfReferenceUID = frame_uid
    ds.PositionReferenceIndicator = ""
    ds.ImageOrientationPatient = [_ds(v) for v in (*d[:, 0], *d[:, 1])]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = int(g.size[1])
    ds.Columns = int(g.size[0])
    ds.PixelSpacing = [_ds(sy), _ds(sx)]  # row spacing (along j = y) first, then column spacing (x)
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = pixel_representation
    ds.WindowCenter = PE_WINDOW_CENTER_HU
    ds.WindowWidth = PE_WINDOW_WIDTH_HU
    ds.RescaleIntercept = RESCALE_INTERCEPT_HU
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    return ds


def write_dicom_series(
    volume: CTVolume,
    folder: str | Path,
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uids: Sequence[str] | None = None,
    patient_id: str = "PELABELUP",
    patient_name: str = "PELabelUp^Synthetic",
    series_description: str = "PELabelUp CT",
    file_names: Sequence[str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write ``volume`` as one DICOM CT file per axial slice ``hu[k]`` (see the module docstring).

    Args:
        volume: HU ``(Z, Y, X)`` on its geometry (LPS mm); slice ``k`` is written to ``file_names[k]``.
        folder: created if needed; existing files are never overwritten (``FileExistsError``).
        study_uid, series_uid: new random UIDs (pydicom ``generate_uid``) when ``None``.
        sop_uids: one per slice; by default derived deterministically from the series UID and ``k``.
        patient_id, patient_name, series_description: written as given.
        file_names: one per slice (default ``slice_0000.dcm``...).
        extra: DICOM keyword -> value set on every slice after the defaults (may override them).

    Returns:
        the written paths, in slice order ``k = 0..Z-1``.
    """
    n_slices = volume.hu.shape[0]
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    if sop_uids is None:
        sop_uids = [generate_uid(entropy_srcs=[series_uid, str(k)]) for k in range(n_slices)]
    if file_names is None:
        file_names = [f"slice_{k:04d}.dcm" for k in range(n_slices)]
    if len(sop_uids) != n_slices or len(file_names) != n_slices:
        raise ValueError(
            f"need {n_slices} sop_uids and file_names, got {len(sop_uids)} and {len(file_names)}"
        )
    if len(set(sop_uids)) != n_slices:
        raise ValueError("sop_uids must be distinct")
    out = Path(folder)
    paths = [out / name for name in file_names]
    clashes = [p for p in paths if p.exists()]
    if clashes:
        raise FileExistsError(f"{clashes[0]} exists already; write_dicom_series never overwrites")
    g = volume.geometry
    if np.linalg.det(g.direction_matrix) < 0:
        log.warning("left-handed direction: a DICOM reader sorts along row x column and will flip k")
    stored, pixel_representation = stored_pixels(volume.hu)
    stored = stored.astype(stored.dtype.newbyteorder("<"), copy=False)
    out.mkdir(parents=True, exist_ok=True)
    k_axis = g.direction_matrix[:, 2] * float(g.spacing_mm[2])
    normal = np.cross(g.direction_matrix[:, 0], g.direction_matrix[:, 1])
    with dicom_config.disable_value_validation():  # RSPECT ids (12 hex characters) are not DICOM UIDs
        shared = _series_dataset(
            volume,
            study_uid=study_uid,
            series_uid=series_uid,
            frame_uid=generate_uid(entropy_srcs=[study_uid, series_uid, "frame-of-reference"]),
            patient_id=patient_id,
            patient_name=patient_name,
            pixel_representation=pixel_representation,
            series_description=series_description,
        )
        for k, (path, sop_uid) in enumerate(zip(paths, sop_uids, strict=True)):
            ds = Dataset()
            ds.update(shared)
            ds.file_meta = _file_meta(sop_uid)
            ds.SOPInstanceUID = sop_uid
            ds.InstanceNumber = k + 1
            position = np.asarray(g.origin_mm, dtype=float) + k * k_axis
            ds.ImagePositionPatient = [_ds(v) for v in position]
            ds.SliceLocation = _ds(float(position @ normal))
            for keyword, value in (extra or {}).items():
                setattr(ds, keyword, value)
            ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
            ds.save_as(path, enforce_file_format=True)
    log.debug("wrote %d DICOM slices to %s", n_slices, out)
    return paths
