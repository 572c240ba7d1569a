"""DICOM refusals: each damaged or unsuitable series gives one clear InputError naming the file or folder."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from io_helpers import ct_like_hu, ipp, one_line_error, rewrite

from PELabelUpLib.errors import InputError
from PELabelUpLib.geometry import Geometry
from PELabelUpLib.io import load_ct, write_dicom_series
from PELabelUpLib.volume import CTVolume


def test_mixed_orientations(a_series):
    folder, paths = a_series
    rewrite(paths[2], ImageOrientationPatient=[1, 0, 0, 0, 0.8, -0.6])
    with pytest.raises(InputError) as err:
        load_ct(folder)
    one_line_error(err, folder, "mixed orientations", paths[2].name)


def test_mixed_sizes(tmp_path, a_ct_volume):
    g = a_ct_volume.geometry
    write_dicom_series(a_ct_volume, tmp_path, series_uid="1.2.3.4")
    narrow = Geometry((14, 20, 2), g.spacing_mm, (g.origin_mm[0], g.origin_mm[1], g.origin_mm[2] + 100))
    write_dicom_series(
        CTVolume(ct_like_hu(narrow.shape_zyx), narrow),
        tmp_path,
        series_uid="1.2.3.4",
        file_names=["x0.dcm", "x1.dcm"],
    )
    with pytest.raises(InputError) as err:
        load_ct(tmp_path)
    one_line_error(err, tmp_path, "mixed image sizes", "20x16", "20x14")


def test_corrupt_file_in_the_series(a_series):
    folder, paths = a_series
    paths[3].write_bytes(b"\x00" * 128 + b"DICM" + np.random.default_rng(0).bytes(300))
    with pytest.raises(InputError) as err:
        load_ct(folder)
    one_line_error(err, paths[3], "corrupt")


def test_garbage_file_named_dcm(a_series):
    folder, paths = a_series
    paths[7].write_bytes(b"this is not a DICOM file at all, just text" * 10)
    with pytest.raises(InputError) as err:
        load_ct(folder)
    one_line_error(err, paths[7])


def test_truncated_slice(a_series):
    folder, paths = a_series
    data = paths[8].read_bytes()
    paths[8].write_bytes(data[:-100])
    with pytest.raises(InputError) as err:
        load_ct(folder)
    one_line_error(err, paths[8], "pixel data")


def test_missing_pixel_data(a_series):
    folder, paths = a_series
    rewrite(paths[1], PixelData=None)
    with pytest.raises(InputError) as err:
        load_ct(folder)
    one_line_error(err, paths[1], "no pixel data")


def test_missing_position(a_series):
    folder, paths = a_series
    rewrite(paths[1], ImagePositionPatient=None)
    with pytest.raises(InputError) as err:
        load_ct(folder)
    one_line_error(err, paths[1], "missing ImagePositionPatient")


def test_not_ct(tmp_path, a_ct_volume):
    write_dicom_series(a_ct_volume, tmp_path / "pet", extra={"Modality": "PT"})
    with pytest.raises(InputError) as err:
        load_ct(tmp_path / "pet")
    one_line_error(err, tmp_path / "pet", "not CT", "Modality PT")


def test_explicit_non_ct_series(tmp_path, a_ct_volume):
    write_dicom_series(a_ct_volume, tmp_path, extra={"Modality": "MR"}, series_uid="1.2.3.5")
    with pytest.raises(InputError) as err:
        load_ct(tmp_path, series_uid="1.2.3.5")
    one_line_error(err, tmp_path, "not CT", "Modality is MR")


def test_single_slice_is_2d(tmp_path, a_ct_volume):
    g = a_ct_volume.geometry
    one = Geometry((16, 20, 1), g.spacing_mm, g.origin_mm)
    write_dicom_series(CTVolume(a_ct_volume.hu[:1], one), tmp_path / "one")
    with pytest.raises(InputError) as err:
        load_ct(tmp_path / "one")
    one_line_error(err, tmp_path / "one", "2-D")


def test_only_localizers(tmp_path, a_ct_volume):
    write_dicom_series(a_ct_volume, tmp_path, extra={"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]})
    with pytest.raises(InputError) as err:
        load_ct(tmp_path)
    one_line_error(err, tmp_path, "localizer")


def test_absurd_pixel_spacing(a_series):
    folder, paths = a_series
    for p in paths:
        rewrite(p, PixelSpacing=[0.01, 0.01])
    with pytest.raises(InputError) as err:
        load_ct(folder)
    one_line_error(err, folder, "absurd voxel spacing")


def test_unparseable_number(a_series):
    folder, paths = a_series
    ds = pydicom.dcmread(paths[0])
    del ds.PixelSpacing
    ds.add_new(0x00280030, "LO", "abc\\0.7")  # a value that is no number, as a broken writer leaves it
    ds.save_as(paths[0])
    with pytest.raises(InputError) as err:
        load_ct(folder)
    one_line_error(err, paths[0], "invalid PixelSpacing")


def test_values_not_hu(tmp_path, a_ct_volume):
    """Without the -1024 intercept the stored values (0..~1400) are all positive: not HU."""
    write_dicom_series(a_ct_volume, tmp_path / "raw", extra={"RescaleIntercept": 0})
    with pytest.raises(InputError) as err:
        load_ct(tmp_path / "raw")
    one_line_error(err, tmp_path / "raw", "no air or fat", "intercept")


def test_folder_without_dicom(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(InputError) as err:
        load_ct(tmp_path)
    one_line_error(err, tmp_path, "no DICOM files")


def test_duplicate_slice_positions(a_series):
    folder, paths = a_series
    rewrite(paths[4], ImagePositionPatient=list(ipp(paths[3])))
    with pytest.raises(InputError) as err:
        load_ct(folder)
    one_line_error(err, folder, "duplicate slice position", paths[3].name, paths[4].name)


def test_absurd_slice_step(tmp_path, a_ct_volume):
    g = a_ct_volume.geometry
    thin = CTVolume(a_ct_volume.hu, Geometry(g.size, g.spacing_mm[:2] + (0.05,), g.origin_mm))
    write_dicom_series(thin, tmp_path / "thin")
    with pytest.raises(InputError) as err:
        load_ct(tmp_path / "thin")
    one_line_error(err, tmp_path / "thin", "absurd voxel spacing", "0.05")
