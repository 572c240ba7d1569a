"""DICOM SEG of an analysis: read back with highdicom, each frame on its own source slice, codes kept."""

from __future__ import annotations

import warnings

import highdicom as hd
import numpy as np
import pydicom
import pytest

from PELabelUpLib.geometry import Geometry
from PELabelUpLib.io import load_ct, write_dicom_series
from PELabelUpLib.io.dicom_seg import SERIES_DESCRIPTION, write_dicom_seg
from PELabelUpLib.io.seg_nrrd import Segment
from PELabelUpLib.terminology import PE_PSEUDOMASK, PE_SEGMENTER, PULMONARY_ARTERIES, parse_terminology
from PELabelUpLib.volume import CTVolume

OBLIQUE = Geometry((24, 20, 9), (0.8, 0.9, 1.5), (10.0, -20.0, 30.0),
                   direction=(1, 0, 0, 0, 0.96, -0.28, 0, 0.28, 0.96))


@pytest.fixture
def a_series(tmp_path):
    hu = np.full(OBLIQUE.shape_zyx, -1000, np.int16)
    hu[2:7, 5:15, 5:20] = 300
    write_dicom_series(CTVolume(hu=hu, geometry=OBLIQUE), tmp_path / "series")
    return load_ct(tmp_path / "series")


def masks(shape):
    clot, arteries, empty = np.zeros(shape, bool), np.zeros(shape, bool), np.zeros(shape, bool)
    clot[3:5, 8:11, 9:13] = True
    arteries[2:7, 6:14, 6:18] = True
    return clot, arteries, empty


def segments(clot, arteries, empty):
    return [Segment(s.segment_id, s.name, m, s.color, s.terminology)
            for s, m in ((PE_PSEUDOMASK, clot), (PE_SEGMENTER, empty), (PULMONARY_ARTERIES, arteries))]


def test_frames_lie_on_their_source_slices_with_the_segments_codes(tmp_path, a_series):
    clot, arteries, empty = masks(OBLIQUE.shape_zyx)
    path = write_dicom_seg(tmp_path / "seg.dcm", a_series.meta["files"], segments(clot, arteries, empty),
                           software_version="9.9")
    seg = hd.seg.segread(path)
    first = pydicom.dcmread(a_series.meta["files"][0], stop_before_pixels=True)
    assert (seg.StudyInstanceUID, seg.PatientID) == (first.StudyInstanceUID, first.PatientID)
    assert seg.SeriesInstanceUID != first.SeriesInstanceUID and seg.SeriesDescription == SERIES_DESCRIPTION
    labels = [d.SegmentLabel for d in seg.SegmentSequence]
    assert labels == ["PE pseudo-mask", "Pulmonary arteries"], "the empty segmenter segment is left out"
    for description, spec in zip(seg.SegmentSequence, (PE_PSEUDOMASK, PULMONARY_ARTERIES), strict=True):
        codes = parse_terminology(spec.terminology)
        assert description.SegmentedPropertyTypeCodeSequence[0].CodeValue == codes["type"][1]
        assert description.SegmentedPropertyCategoryCodeSequence[0].CodeValue == codes["category"][1]
        assert description.SegmentAlgorithmType == "AUTOMATIC"
    uids = a_series.meta["sop_uids"]
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[1, 2])
    np.testing.assert_array_equal(pixels[..., 0] > 0, clot)
    np.testing.assert_array_equal(pixels[..., 1] > 0, arteries)
    positions = {f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID:
                 [float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient]
                 for f in seg.PerFrameFunctionalGroupsSequence}
    for uid, file in zip(uids, a_series.meta["files"], strict=True):
        if uid in positions:
            source = pydicom.dcmread(file, stop_before_pixels=True)
            np.testing.assert_allclose(positions[uid], [float(v) for v in source.ImagePositionPatient], atol=1e-4)


def test_filled_slices_are_left_out_and_nothing_is_written_for_empty_masks(tmp_path, a_series):
    clot, arteries, empty = masks(OBLIQUE.shape_zyx)
    files = list(a_series.meta["files"])
    files[3] = None  # a slice the loader filled: no source image
    seg = hd.seg.segread(write_dicom_seg(tmp_path / "seg.dcm", files, segments(clot, arteries, empty),
                                         software_version="9.9"))
    referenced = {f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
                  for f in seg.PerFrameFunctionalGroupsSequence}
    assert a_series.meta["sop_uids"][3] not in referenced and a_series.meta["sop_uids"][4] in referenced
    present = [k for k in range(len(files)) if files[k] is not None]
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=[a_series.meta["sop_uids"][k] for k in present],
                                               segment_numbers=[1, 2])
    np.testing.assert_array_equal(pixels[..., 0] > 0, clot[present], err_msg="each frame on its own slice")
    np.testing.assert_array_equal(pixels[..., 1] > 0, arteries[present])
    assert write_dicom_seg(tmp_path / "none.dcm", files, segments(empty, empty, empty), software_version="9.9") is None
    assert not (tmp_path / "none.dcm").exists()


def test_a_mask_off_the_series_grid_is_refused(tmp_path, a_series):
    clot, arteries, empty = masks((4, 20, 24))
    with pytest.raises(ValueError, match="not on the series' grid"):
        write_dicom_seg(tmp_path / "seg.dcm", a_series.meta["files"], segments(clot, arteries, empty),
                        software_version="9.9")


def test_anonymised_non_uid_ids_are_copied_with_one_warning(tmp_path, caplog):
    """RSPECT's 12-hex study and series ids are no DICOM UIDs: the SEG copies them, said once, not per element."""
    hu = np.full(OBLIQUE.shape_zyx, -1000, np.int16)
    hu[2:7, 5:15, 5:20] = 300
    write_dicom_series(CTVolume(hu=hu, geometry=OBLIQUE), tmp_path / "series", study_uid="0bc69c233611",
                       series_uid="81ff1db8796e")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        series = load_ct(tmp_path / "series")
        clot, arteries, empty = masks(OBLIQUE.shape_zyx)
        path = write_dicom_seg(tmp_path / "seg.dcm", series.meta["files"], segments(clot, arteries, empty),
                               software_version="9.9")
    assert not [w for w in caught if "Invalid value for VR UI" in str(w.message)]
    said = [r.getMessage() for r in caplog.records if "not valid DICOM UIDs" in r.getMessage()]
    assert said == ["DICOM SEG: the source's SeriesInstanceUID, StudyInstanceUID are not valid DICOM UIDs; the SEG "
                    "copies them as they are"]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Invalid value for VR UI")  # reading them back says it again
        assert str(hd.seg.segread(path).StudyInstanceUID) == "0bc69c233611"
