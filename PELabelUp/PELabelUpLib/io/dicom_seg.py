"""DICOM Segmentation (SEG) objects of an analysis, for PACS and DICOM viewers (``highdicom``).

An analysis of a DICOM series also writes its segments as one binary SEG instance that references the series'
images frame by frame: each frame is one segment on one source slice, placed by that slice's own position and
orientation, so a viewer overlays it on the CT without resampling. The SEG joins the source study (patient and
study attributes come from the images) as a new series. Segments carry the SNOMED CT codes of
:mod:`PELabelUpLib.terminology` (category, type and anatomic region) and are marked AUTOMATIC, made by an
artificial-intelligence algorithm named with PELabelUp's version.

Slices the loader filled between missing ones (``meta["filled_slices"]``) have no source image: their part of
the masks is left out of the SEG (it stays in the NIfTI and ``.seg.nrrd`` outputs). Empty segments are left
out (a SEG segment needs at least one frame); with every segment empty no SEG is written.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..terminology import NO_CODE, parse_terminology
from .seg_nrrd import Segment

log = logging.getLogger(__name__)

SERIES_NUMBER = 9900
SERIES_DESCRIPTION = "PELabelUp PE segmentation (research, not for clinical use)"


def _coded(code: tuple[str, str, str]):
    import highdicom as hd

    scheme, value, meaning = code
    return hd.sr.CodedConcept(value, scheme, meaning)


def _description(number: int, segment: Segment, algorithm):
    import highdicom as hd

    if segment.terminology is None:
        raise ValueError(f"segment {segment.name!r} has no terminology: a DICOM SEG segment needs its codes")
    codes = parse_terminology(segment.terminology)
    region = codes.get("region", NO_CODE)
    return hd.seg.SegmentDescription(
        segment_number=number, segment_label=segment.name, tracking_id=segment.segment_id,
        tracking_uid=hd.UID(), segmented_property_category=_coded(codes["category"]),
        segmented_property_type=_coded(codes["type"]),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm,
        anatomic_regions=None if region == NO_CODE else [_coded(region)])


def write_dicom_seg(path: str | Path, source_files: Sequence[str | None], segments: Sequence[Segment], *,
                    software_version: str) -> Path | None:
    """Write ``segments`` as one DICOM SEG instance referencing the series whose file of slice k is
    ``source_files[k]`` (``None`` for a filled slice; the loader's ``meta["files"]``).

    Args:
        path: the ``.dcm`` file to write.
        source_files: one entry per axial slice k of the masks' grid, that slice's DICOM file.
        segments: masks ``(Z, Y, X)`` on the series' grid, with names, IDs and terminology.
        software_version: recorded as the SEG's software version and the algorithm's version.

    Returns:
        ``path``, or ``None`` when every segment is empty (nothing to reference).

    Raises:
        InputError: a source file cannot be read as DICOM.
        ValueError: a mask is not on the series' grid, or a segment has no terminology.
    """
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    shapes = {np.asarray(s.mask).shape for s in segments}
    if len(shapes) > 1 or any(shape[0] != len(source_files) for shape in shapes):
        raise ValueError(f"segment masks {sorted(shapes)} are not on the series' grid of {len(source_files)} slices")
    present = [k for k, f in enumerate(source_files) if f is not None]
    kept = [s for s in segments if np.asarray(s.mask)[present].any()]
    if not kept:
        log.info("no DICOM SEG: every segment is empty on the source slices")
        return None
    # pydicom warns at every read and copy of a UID that is not valid (anonymised RSPECT ids): said once here
    with _without_invalid_uid_warnings():
        sources = [_read_source(source_files[k]) for k in present]
        invalid = sorted(k for k in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID")
                         if not pydicom.uid.UID(str(getattr(sources[0], k, ""))).is_valid)
        if invalid:
            log.warning("DICOM SEG: the source's %s %s not valid DICOM UIDs; the SEG copies them as they are",
                        ", ".join(invalid), "is" if len(invalid) == 1 else "are")
        if len(present) < len(source_files):
            log.warning("DICOM SEG: %d filled slice(s) have no source image and are left out",
                        len(source_files) - len(present))
        algorithm = hd.AlgorithmIdentificationSequence(name="PELabelUp", version=software_version,
                                                       family=codes.cid7162.ArtificialIntelligence)
        pixels = np.stack([np.asarray(s.mask)[present] != 0 for s in kept], axis=-1).astype(np.uint8)
        seg = _segmentation(hd, sources, pixels, kept, algorithm, software_version)
        out = Path(path)
        seg.save_as(out)
    log.info("DICOM SEG %s: %d segments, %d frames", out.name, len(kept), int(seg.NumberOfFrames))
    return out


INVALID_UID_WARNING = "Invalid value for VR UI"


def _read_source(path: str):
    import pydicom

    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except (OSError, pydicom.errors.InvalidDicomError) as exc:
        raise InputError(path, f"cannot read the source image for the DICOM SEG: {exc}") from None


@contextmanager
def _without_invalid_uid_warnings() -> Iterator[None]:
    """pydicom's invalid-UID warnings (a warning and a log record each time a UID is set) left out in the block."""
    pydicom_log = logging.getLogger("pydicom")

    def keep(record: logging.LogRecord) -> bool:
        return INVALID_UID_WARNING not in record.getMessage()

    pydicom_log.addFilter(keep)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=INVALID_UID_WARNING)
            yield
    finally:
        pydicom_log.removeFilter(keep)


def _segmentation(hd, sources, pixels, kept, algorithm, software_version: str):
    return hd.seg.Segmentation(
        source_images=sources, pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[_description(n, s, algorithm) for n, s in enumerate(kept, start=1)],
        series_instance_uid=hd.UID(), series_number=SERIES_NUMBER, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="PELabelUp", manufacturer_model_name="PELabelUp", software_versions=software_version,
        device_serial_number="none", series_description=SERIES_DESCRIPTION)
