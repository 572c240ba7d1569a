"""DICOM CT series: the writer, the round trip, the choice among series, slice order, gaps and tilt."""

from __future__ import annotations

import math

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from io_helpers import (
    GEOMETRIES,
    assert_same_geometry,
    ct_like_hu,
    ipp,
    one_line_error,
    rewrite,
    rotation_direction,
)

from PELabelUpLib.errors import InputError
from PELabelUpLib.geometry import Geometry
from PELabelUpLib.io import load_ct, write_dicom_series
from PELabelUpLib.volume import CTVolume

# ---- the writer and the round trip ---------------------------------------------------------------------------


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_round_trip_is_exact(tmp_path, volume_on, geometry):
    volume = volume_on(geometry)
    write_dicom_series(volume, tmp_path / "s")
    back = load_ct(tmp_path / "s")
    assert back.hu.dtype == np.int16
    np.testing.assert_array_equal(back.hu, volume.hu)
    assert_same_geometry(back.geometry, geometry, 1e-4, 1e-6)
    assert back.meta["gantry_tilt_deg"] == 0.0


def test_gdcm_reads_our_series_with_the_same_geometry(tmp_path, volume_on):
    """An independent reader (ITK/GDCM) agrees with the files the writer produced."""
    geometry = GEOMETRIES[2].values[0]
    volume = volume_on(geometry)
    write_dicom_series(volume, tmp_path / "s")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "s")))
    image = reader.Execute()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), volume.hu)
    assert_same_geometry(Geometry.from_sitk(image), geometry, 1e-4, 1e-5)


def test_written_headers(a_series, a_ct_volume):
    _, paths = a_series
    ds = pydicom.dcmread(paths[3])
    g = a_ct_volume.geometry
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2" == ds.file_meta.MediaStorageSOPClassUID
    assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
    assert ds.Modality == "CT"
    assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert float(ds.RescaleSlope) == 1
    assert float(ds.RescaleIntercept) == -1024
    assert [float(v) for v in ds.PixelSpacing] == [g.spacing_mm[1], g.spacing_mm[0]]  # row (y) spacing first
    assert float(ds.SliceThickness) == float(ds.SpacingBetweenSlices) == g.spacing_mm[2]
    assert ds.InstanceNumber == 4
    assert float(ds.SliceLocation) == pytest.approx(g.origin_mm[2] + 3 * g.spacing_mm[2])
    np.testing.assert_allclose(ipp(paths[3]), np.add(g.origin_mm, (0, 0, 3 * g.spacing_mm[2])))
    assert float(ds.WindowCenter) == 100
    assert float(ds.WindowWidth) == 700
    assert float(ds.KVP) > 0
    assert int(ds.Exposure) > 0
    assert ds.StudyDate
    assert ds.StudyTime
    assert ds.PatientID
    assert ds.PatientName is not None
    for uid in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.FrameOfReferenceUID):
        assert pydicom.uid.UID(uid).is_valid
    assert ds.PixelRepresentation == 0
    assert ds.pixel_array.dtype == np.uint16
    np.testing.assert_array_equal(ds.pixel_array.astype(int) - 1024, a_ct_volume.hu[3])


def test_values_below_minus_1024_are_stored_as_int16(tmp_path, a_ct_volume):
    hu = a_ct_volume.hu.copy()
    hu[:, :2, :] = -3024  # scanner padding outside the field of view
    paths = write_dicom_series(CTVolume(hu, a_ct_volume.geometry), tmp_path / "s")
    assert pydicom.dcmread(paths[0]).PixelRepresentation == 1
    np.testing.assert_array_equal(load_ct(tmp_path / "s").hu, hu)


def test_left_handed_volume_reads_back_flipped_along_k(tmp_path, a_ct_volume):
    g = a_ct_volume.geometry
    flipped_dir = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
    volume = CTVolume(a_ct_volume.hu, Geometry(g.size, g.spacing_mm, g.origin_mm, flipped_dir))
    write_dicom_series(volume, tmp_path / "s")
    back = load_ct(tmp_path / "s")
    np.testing.assert_array_equal(back.hu, volume.hu[::-1])
    last = volume.geometry.index_to_world(np.array([3.0, 4.0, g.size[2] - 1]))
    np.testing.assert_allclose(back.geometry.index_to_world(np.array([3.0, 4.0, 0.0])), last, atol=1e-6)


def test_writer_never_overwrites(a_series, a_ct_volume):
    folder, _ = a_series
    with pytest.raises(FileExistsError):
        write_dicom_series(a_ct_volume, folder)


def test_shuffled_file_order_and_instance_numbers(tmp_path, a_ct_volume):
    rng = np.random.default_rng(7)
    names = [f"{rng.integers(0, 2**40):x}.dcm" for _ in range(12)]
    paths = write_dicom_series(a_ct_volume, tmp_path / "s", file_names=names)
    for path, number in zip(paths, rng.permutation(12) + 1, strict=True):
        rewrite(path, InstanceNumber=int(number))  # misleading numbers: sorting must use positions
    back = load_ct(tmp_path / "s")
    np.testing.assert_array_equal(back.hu, a_ct_volume.hu)
    assert back.meta["files"] == [str(p) for p in paths]


def test_rescale_slope_is_applied(a_series):
    folder, paths = a_series
    stored = [pydicom.dcmread(p).pixel_array.astype(int) for p in paths]
    for p in paths:
        rewrite(p, RescaleSlope=2, RescaleIntercept=-2048)
    back = load_ct(folder)
    np.testing.assert_array_equal(back.hu, np.stack(stored) * 2 - 2048)
    assert back.hu.dtype == np.int16


def test_single_file_loads_its_series(a_series, a_ct_volume):
    _, paths = a_series
    np.testing.assert_array_equal(load_ct(paths[5]).hu, a_ct_volume.hu)


def test_compressed_series_is_decoded_by_pydicom_or_gdcm(tmp_path, a_series, a_ct_volume):
    """JPEG Lossless, which pydicom cannot decode without plugins: the loader falls back on GDCM."""
    _, paths = a_series
    out = tmp_path / "jpeg"
    out.mkdir()
    for path in paths:
        source = sitk.ReadImage(str(path))  # GDCM: HU plus the header tags
        image = sitk.Cast(source, sitk.sitkInt16)
        for key in source.GetMetaDataKeys():
            image.SetMetaData(key, source.GetMetaData(key))
        writer = sitk.ImageFileWriter()
        writer.SetImageIO("GDCMImageIO")
        writer.KeepOriginalImageUIDOn()
        writer.SetUseCompression(True)
        writer.SetCompressor("JPEG")
        writer.SetFileName(str(out / path.name))
        writer.Execute(image)
    ds = pydicom.dcmread(out / paths[0].name)
    assert ds.file_meta.TransferSyntaxUID.is_compressed
    try:
        assert ds.pixel_array.shape == (20, 16)
        expected = "pydicom"
    except (NotImplementedError, RuntimeError):
        expected = "gdcm"
    back = load_ct(out)
    assert back.meta["pixel_decoder"] == expected
    np.testing.assert_array_equal(back.hu, a_ct_volume.hu)
    assert_same_geometry(back.geometry, a_ct_volume.geometry)


# ---- several series in one folder -----------------------------------------------------------------------------


def test_ct_is_chosen_among_mr_localizer_and_2d_series(tmp_path, a_ct_volume):
    folder = tmp_path / "study"
    g = a_ct_volume.geometry
    big = Geometry((16, 20, 30), g.spacing_mm, g.origin_mm)
    more = CTVolume(ct_like_hu(big.shape_zyx, 3), big)
    write_dicom_series(more, folder / "mr", extra={"Modality": "MR"}, series_description="T1")
    write_dicom_series(more, folder / "scout", extra={"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]})
    single = Geometry((16, 20, 1), g.spacing_mm, g.origin_mm)
    write_dicom_series(CTVolume(ct_like_hu(single.shape_zyx, 4), single), folder / "single")
    ct_paths = write_dicom_series(a_ct_volume, folder / "ct")
    (folder / "README.txt").write_text("not DICOM, ignored")
    back = load_ct(folder)
    np.testing.assert_array_equal(back.hu, a_ct_volume.hu)
    assert back.meta["series_uid"] == pydicom.dcmread(ct_paths[0]).SeriesInstanceUID
    reasons = sorted(s["skipped_because"] for s in back.meta["other_series"])
    assert reasons == ["2-D image (a single slice position)", "localizer/scout image", "modality MR"]
    assert back.meta["ignored_files"] == 1


def test_series_uid_picks_a_series(tmp_path, a_ct_volume):
    g = a_ct_volume.geometry
    small = Geometry((16, 20, 5), g.spacing_mm, g.origin_mm)
    small_volume = CTVolume(ct_like_hu(small.shape_zyx, 9), small)
    write_dicom_series(a_ct_volume, tmp_path / "a", series_uid="1.2.3.1")
    write_dicom_series(small_volume, tmp_path / "b", series_uid="1.2.3.2")
    assert load_ct(tmp_path).meta["series_uid"] == "1.2.3.1"  # most slices
    np.testing.assert_array_equal(load_ct(tmp_path, series_uid="1.2.3.2").hu, small_volume.hu)
    with pytest.raises(InputError) as err:
        load_ct(tmp_path, series_uid="9.9.9")
    one_line_error(err, tmp_path, "series 9.9.9 not found", "1.2.3.1")


def test_mixed_series_given_as_one_file_list(tmp_path, a_ct_volume):
    a = write_dicom_series(a_ct_volume, tmp_path / "a")
    b = write_dicom_series(a_ct_volume, tmp_path / "b")
    np.testing.assert_array_equal(load_ct(a).hu, a_ct_volume.hu)
    with pytest.raises(InputError) as err:
        load_ct(a + b[:3])
    one_line_error(err, tmp_path / "a", "mixed series given as one file list", "2 series")


# ---- slice order, gaps, uneven spacing, tilt ---------------------------------------------------------------


def test_missing_slice_is_refused_naming_the_gap(a_series):
    folder, paths = a_series
    paths[5].unlink()
    with pytest.raises(InputError) as err:
        load_ct(folder)
    one_line_error(
        err, folder, "missing slice", "gap of 5.000 mm", paths[4].name, paths[6].name, "median step 2.500"
    )


def test_missing_slice_allowed_is_filled_and_recorded(a_series, a_ct_volume):
    folder, paths = a_series
    paths[5].unlink()
    back = load_ct(folder, allow_gaps=True)
    assert back.geometry.same_grid(a_ct_volume.geometry)
    kept = [k for k in range(12) if k != 5]
    np.testing.assert_array_equal(back.hu[kept], a_ct_volume.hu[kept])
    expected = np.rint((a_ct_volume.hu[4].astype(float) + a_ct_volume.hu[6]) / 2)
    np.testing.assert_array_equal(back.hu[5], expected)
    assert back.meta["filled_slices"] == [5]
    assert back.meta["slice_gaps"][0]["n_missing"] == 1
    assert back.meta["sop_uids"][5] is None


def test_unevenly_spaced_slices(a_series):
    folder, paths = a_series
    rewrite(paths[6], ImagePositionPatient=list(ipp(paths[6]) + (0, 0, 0.8)))
    with pytest.raises(InputError) as err:
        load_ct(folder)
    one_line_error(err, folder, "unevenly spaced", paths[6].name)


def test_positions_rounded_to_a_tenth_of_a_millimetre_still_load(tmp_path):
    """Scanners round ImagePositionPatient; a 0.625 mm step written to 0.1 mm is regular, not uneven."""
    geometry = Geometry((16, 20, 12), (0.7, 0.7, 0.625), (-5.0, 10.0, -200.0))
    volume = CTVolume(ct_like_hu(geometry.shape_zyx), geometry)
    paths = write_dicom_series(volume, tmp_path / "s")
    for path in paths:
        rewrite(path, ImagePositionPatient=[f"{v:.1f}" for v in ipp(path)])
    back = load_ct(tmp_path / "s")
    np.testing.assert_array_equal(back.hu, volume.hu)
    assert abs(back.geometry.spacing_mm[2] - 0.625) < 0.01


def test_gantry_tilt_is_detected_and_recorded(tmp_path):
    tilt_deg, table_step = 15.0, 2.0
    direction = rotation_direction(
        "x", (tilt_deg,)
    )  # tilted slice planes: rows along x, columns tilted in y-z
    geometry = Geometry(
        (16, 20, 12),
        (0.7, 0.8, table_step * math.cos(math.radians(tilt_deg))),
        (-5.0, 10.0, -200.0),
        direction,
    )
    volume = CTVolume(ct_like_hu(geometry.shape_zyx), geometry)
    paths = write_dicom_series(volume, tmp_path / "s")
    for k, path in enumerate(paths):  # the table moves along z: positions do not follow the slice normal
        rewrite(path, ImagePositionPatient=list(np.add(geometry.origin_mm, (0.0, 0.0, k * table_step))))
    back = load_ct(tmp_path / "s")
    assert back.meta["gantry_tilt_deg"] == pytest.approx(tilt_deg, abs=1e-6)
    assert back.meta["gantry_tilt_shift_mm"] == pytest.approx(
        11 * table_step * math.sin(math.radians(tilt_deg)), abs=1e-6
    )
    assert_same_geometry(back.geometry, geometry, 1e-6, 1e-9)  # true slice normal, step measured along it
    np.testing.assert_array_equal(back.hu, volume.hu)
