"""NIfTI / NRRD / MetaImage: exact round trips and the refusals of the loader, on real files in tmp_path."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from io_helpers import GEOMETRIES, assert_same_geometry, one_line_error

from PELabelUpLib.errors import InputError
from PELabelUpLib.geometry import Geometry
from PELabelUpLib.io import (
    NIFTI_TOLERANCE_DIRECTION,
    NIFTI_TOLERANCE_MM,
    load_ct,
    read_label_file,
    write_dicom_series,
    write_volume,
)
from PELabelUpLib.volume import CTVolume

EXTENSIONS = [".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd"]


def _tolerances(ext: str) -> tuple[float, float]:
    """(mm, direction) tolerance: NIfTI stores float32; NRRD and MetaImage store full doubles as text."""
    return (NIFTI_TOLERANCE_MM, NIFTI_TOLERANCE_DIRECTION) if ext.startswith(".nii") else (1e-9, 1e-12)


@pytest.mark.parametrize("ext", EXTENSIONS)
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_volume_round_trip_keeps_hu_and_geometry(tmp_path, volume_on, geometry, ext):
    volume = volume_on(geometry)
    path = write_volume(volume, tmp_path / f"ct{ext}")
    back = load_ct(path)
    assert back.hu.dtype == np.int16
    np.testing.assert_array_equal(back.hu, volume.hu)
    tol_mm, tol_dir = _tolerances(ext)
    assert_same_geometry(back.geometry, geometry, tol_mm, tol_dir)
    assert back.meta["format"] in ("NIfTI", "NRRD", "MetaImage")


def test_nifti_tolerance_is_what_float32_storage_gives(tmp_path, volume_on):
    """The documented NIfTI tolerance holds for a large origin and an oblique grid, and is not slack."""
    g = GEOMETRIES[2].values[0]
    far = Geometry(
        g.size,
        (0.7123456789, 0.8123456789, 2.123456789),
        (-487.123456789, 321.987654321, -1234.56789),
        g.direction,
    )
    back = load_ct(write_volume(volume_on(far), tmp_path / "far.nii.gz"))
    origin_error = np.abs(np.subtract(back.geometry.origin_mm, far.origin_mm)).max()
    assert 0 < origin_error < NIFTI_TOLERANCE_MM  # float32: lossy, but within the documented bound
    assert np.abs(np.subtract(back.geometry.direction, far.direction)).max() < NIFTI_TOLERANCE_DIRECTION


@pytest.mark.parametrize("ext", [".nrrd", ".mha", ".nii.gz"])
def test_float_hu_stays_float32(tmp_path, a_ct_volume, ext):
    hu = a_ct_volume.hu.astype(np.float32) + 0.25
    back = load_ct(write_volume(CTVolume(hu, a_ct_volume.geometry), tmp_path / f"f{ext}"))
    assert back.hu.dtype == np.float32
    np.testing.assert_array_equal(back.hu, hu)


@pytest.mark.parametrize("ext", [".nrrd", ".nii.gz", ".mha"])
def test_integral_values_in_another_type_come_back_int16(tmp_path, a_ct_volume, ext):
    path = write_volume(a_ct_volume.hu.astype(np.int32), tmp_path / f"i32{ext}", a_ct_volume.geometry)
    back = load_ct(path)
    assert back.hu.dtype == np.int16
    np.testing.assert_array_equal(back.hu, a_ct_volume.hu)


@pytest.mark.parametrize("ext", [".nii.gz", ".nrrd", ".mha"])
def test_mask_round_trip(tmp_path, a_ct_volume, ext):
    mask = a_ct_volume.hu > 200
    path = write_volume(mask, tmp_path / f"mask{ext}", a_ct_volume.geometry)
    values, geometry = read_label_file(path)
    assert values.dtype == np.uint8
    np.testing.assert_array_equal(values, mask.astype(np.uint8))
    assert geometry.same_grid(a_ct_volume.geometry)


def test_write_volume_refuses_bad_calls(tmp_path, a_ct_volume):
    with pytest.raises(ValueError, match="needs its geometry"):
        write_volume(a_ct_volume.hu, tmp_path / "x.nrrd")
    with pytest.raises(ValueError, match="must be None"):
        write_volume(a_ct_volume, tmp_path / "x.nrrd", a_ct_volume.geometry)
    with pytest.raises(ValueError, match="unsupported output extension"):
        write_volume(a_ct_volume, tmp_path / "x.png")


def test_write_is_atomic_and_leaves_no_temporary(tmp_path, a_ct_volume):
    write_volume(a_ct_volume, tmp_path / "sub" / "ct.nii.gz")
    write_volume(a_ct_volume, tmp_path / "sub" / "ct.nii.gz")  # overwrite in place
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["ct.nii.gz"]


# ---- refusals ---------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope.nii.gz"
    with pytest.raises(InputError) as err:
        load_ct(path)
    one_line_error(err, path, "not found")


def test_unknown_format(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(InputError) as err:
        load_ct(path)
    one_line_error(err, path, "unknown format")


@pytest.mark.parametrize("name", ["empty.nii.gz", "empty.nrrd", "empty.dcm"])
def test_empty_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(InputError) as err:
        load_ct(path)
    one_line_error(err, path, "empty")


@pytest.mark.parametrize("ext", [".nii", ".nii.gz", ".nrrd", ".mha"])
@pytest.mark.parametrize("fraction", [0.3, 0.7, 0.995])
def test_truncated_file(tmp_path, a_ct_volume, ext, fraction):
    data = write_volume(a_ct_volume, tmp_path / f"full{ext}").read_bytes()
    cut = tmp_path / f"cut{ext}"
    cut.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(InputError) as err:
        load_ct(cut)
    one_line_error(err, cut)


def test_garbage_with_an_image_extension(tmp_path):
    path = tmp_path / "garbage.nii.gz"
    path.write_bytes(gzip.compress(b"not an image at all" * 40))
    with pytest.raises(InputError) as err:
        load_ct(path)
    one_line_error(err, path, "NIfTI")


def test_two_d_file(tmp_path):
    path = tmp_path / "slice.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((20, 16), -1000, np.int16)), str(path))
    with pytest.raises(InputError) as err:
        load_ct(path)
    one_line_error(err, path, "2-D")


def test_single_slice_volume(tmp_path):
    path = write_volume(
        np.full((1, 20, 16), -1000, np.int16),
        tmp_path / "one.nii.gz",
        Geometry((16, 20, 1), (1, 1, 1), (0, 0, 0)),
    )
    with pytest.raises(InputError) as err:
        load_ct(path)
    one_line_error(err, path, "2-D", "single slice")


def test_four_d_image(tmp_path):
    path = tmp_path / "series.nii.gz"
    frame = sitk.GetImageFromArray(np.full((6, 8, 10), -1000, np.int16))
    sitk.WriteImage(sitk.JoinSeries([frame, frame, frame]), str(path))  # a time series of three volumes
    with pytest.raises(InputError) as err:
        load_ct(path)
    one_line_error(err, path, "4-D", "10x8x6x3")


def test_multi_component_image(tmp_path):
    path = tmp_path / "rgb.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((6, 8, 10, 3), np.uint8), isVector=True), str(path))
    with pytest.raises(InputError) as err:
        load_ct(path)
    one_line_error(err, path, "multi-component", "3 values per voxel")


@pytest.mark.parametrize(
    ("values", "words"),
    [
        pytest.param(np.random.default_rng(1).integers(0, 256, (6, 8, 10)).astype(np.uint8), ("uint8", "mask"), id="uint8"),
        pytest.param(np.random.default_rng(2).integers(0, 256, (6, 8, 10)).astype(np.int16), ("8-bit",), id="0..255"),
        pytest.param(np.random.default_rng(3).integers(0, 4096, (6, 8, 10)).astype(np.uint16), ("no air or fat", "intercept"), id="raw-0..4095"),
        pytest.param(np.random.default_rng(4).uniform(-1, 1, (6, 8, 10)).astype(np.float32), ("narrower", "normalised"), id="normalised"),
        pytest.param(np.where(np.arange(480).reshape(6, 8, 10) == 7, np.nan, -1000.0).astype(np.float32), ("NaN",), id="nan"),
        pytest.param(np.linspace(-1e6, 1e6, 480).reshape(6, 8, 10).astype(np.float32), ("outside any CT scale",), id="huge"),
    ],
)  # fmt: skip
def test_values_that_are_not_hu(tmp_path, values, words):
    path = write_volume(values, tmp_path / "notct.nrrd", Geometry((10, 8, 6), (1, 1, 1), (0, 0, 0)))
    with pytest.raises(InputError) as err:
        load_ct(path)
    one_line_error(err, path, *words)


@pytest.mark.parametrize("name", ["nan.nii.gz", "nan.nii"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, ">f4"])
def test_nifti_nan_and_infinity_are_refused_not_read_as_zero(tmp_path, name, bad, dtype):
    """ITK reads a float NIfTI file's NaN and infinite voxels as 0; the loader and the label reader refuse them."""
    values = np.full((6, 8, 10), -1000.0)
    values[3, 4, 5], values[0, 0, 0] = 500.0, bad
    path = tmp_path / name
    if dtype == ">f4":  # a big-endian file (nibabel writes the byte order it is given)
        nibabel = pytest.importorskip("nibabel")
        nibabel.save(nibabel.Nifti1Image(values.transpose(2, 1, 0).astype(">f4"), np.eye(4)), str(path))
    else:
        sitk.WriteImage(sitk.GetImageFromArray(values.astype(dtype)), str(path))
    for read in (load_ct, read_label_file):
        with pytest.raises(InputError) as err:
            read(path)
        one_line_error(err, path, "NaN or infinity")
    values[0, 0, 0] = -1000.0
    sitk.WriteImage(sitk.GetImageFromArray(values.astype(np.float32)), str(path))
    assert load_ct(path).hu.max() == 500, "finite float files load as before"


def test_volume_without_air_loads_with_a_warning(tmp_path):
    values = np.random.default_rng(5).integers(-150, 400, (6, 8, 10)).astype(np.int16)
    volume = load_ct(write_volume(values, tmp_path / "crop.mha", Geometry((10, 8, 6), (1, 1, 1), (0, 0, 0))))
    assert volume.meta["hu_warnings"]
    assert "no air" in volume.meta["hu_warnings"][0]


@pytest.mark.parametrize("spacing", [(0.05, 1, 1), (1, 25, 1), (1, 1, 1e-6)])
def test_absurd_spacing(tmp_path, spacing):
    path = tmp_path / "spacing.mha"
    image = sitk.GetImageFromArray(np.full((6, 8, 10), -1000, np.int16))
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))
    with pytest.raises(InputError) as err:
        load_ct(path)
    one_line_error(err, path, "absurd voxel spacing", "0.1..20 mm")


def test_unparseable_nrrd_header(tmp_path, a_ct_volume):
    path = write_volume(a_ct_volume, tmp_path / "ok.nhdr", compress=False)
    header = path.read_text()
    assert "space directions: (0.69999999999999996,0,0)" in header
    path.write_text(
        header.replace("space directions: (0.69999999999999996,0,0)", "space directions: (nan,0,0)")
    )
    with pytest.raises(InputError) as err:
        load_ct(path)
    one_line_error(err, path, "cannot read NRRD file", "space directions")


@pytest.mark.realdata
def test_real_cta_crop(real_cta_dir: Path):
    volume = load_ct(real_cta_dir / "cta_crop.nii.gz")
    assert volume.hu.dtype == np.int16
    assert volume.geometry.size == (122, 102, 112)
    assert volume.hu.min() < -900
    assert volume.hu.max() > 500
    mask, grid = read_label_file(real_cta_dir / "pulmonary_artery.nii.gz")
    assert grid.same_grid(volume.geometry)
    assert int(mask.sum()) == 14261
    with pytest.raises(InputError) as err:  # a mask is not a CT
        load_ct(real_cta_dir / "pulmonary_artery.nii.gz")
    one_line_error(err, real_cta_dir / "pulmonary_artery.nii.gz", "uint8")


def test_damaged_metaimage_header_is_refused_before_itk_reads_it(tmp_path, a_ct_volume):
    """The newline after ElementDataFile replaced by a byte: ITK's MetaIO has corrupted memory on this."""
    path = write_volume(a_ct_volume, tmp_path / "ct.mha")
    data = path.read_bytes()
    assert b"ElementDataFile = LOCAL\n" in data
    path.write_bytes(data.replace(b"ElementDataFile = LOCAL\n", b"ElementDataFile = LOCAL\xeb", 1))
    with pytest.raises(InputError) as err:
        load_ct(path)
    one_line_error(err, path, "corrupt MetaImage header")


def test_metaimage_with_dicom_tag_keys_loads(tmp_path, a_ct_volume):
    """SimpleITK copies DICOM tags such as ``0008|0060`` into MetaImage headers: legal keys."""
    image = a_ct_volume.to_sitk()
    image.SetMetaData("0008|0060", "CT")
    path = tmp_path / "from_dicom.mha"
    sitk.WriteImage(image, str(path), useCompression=True)
    assert b"0008|0060 = CT" in path.read_bytes()
    np.testing.assert_array_equal(load_ct(path).hu, a_ct_volume.hu)


@pytest.mark.parametrize(("size", "spacing"), [((96, 96, 60), (20, 20, 20)), ((64, 64, 300), (1, 1, 9))])
def test_a_field_of_view_no_ct_has_is_refused(tmp_path, size, spacing):
    """Each spacing is allowed, but voxels x spacing makes a body metres across (1.9 m, or 2.7 m along the table)."""
    path = write_volume(np.full(size[::-1], -1000, np.int16), tmp_path / "huge.nii.gz", Geometry(size, spacing, (0, 0, 0)))
    for read in (load_ct, read_label_file):
        with pytest.raises(InputError) as err:
            read(path)
        one_line_error(err, path, "field of view", "larger than any CT")


def test_a_body_stored_head_to_feet_along_the_first_file_axis_loads(tmp_path):
    """1.2 m along the table is a CT's field of view whichever file axis holds it (coronal or sagittal storage)."""
    size, spacing = (120, 112, 112), (10.0, 4.0, 4.0)  # 1200 x 448 x 448 mm
    values = np.full(size[::-1], -1000, np.int16)
    values[:, 40:70, :] = 40
    volume = load_ct(write_volume(values, tmp_path / "coronal.nii.gz", Geometry(size, spacing, (0, 0, 0))))
    assert volume.geometry.size == size


def test_a_dicom_series_with_a_field_of_view_no_ct_has_is_refused(tmp_path):
    volume = CTVolume(hu=np.full((4, 70, 70), -1000, np.int16), geometry=Geometry((70, 70, 4), (15, 15, 2), (0, 0, 0)))
    write_dicom_series(volume, tmp_path / "series")
    with pytest.raises(InputError) as err:
        load_ct(tmp_path / "series")
    one_line_error(err, tmp_path / "series", "field of view 1050 x 1050 x 8 mm")


def test_a_slicer_segmentation_given_as_the_ct_is_named_as_such(tmp_path):
    path = write_volume(np.zeros((6, 8, 10), np.uint8), tmp_path / "case.seg.nrrd", Geometry((10, 8, 6), (1, 1, 1), (0, 0, 0)))
    with pytest.raises(InputError) as err:
        load_ct(path)
    one_line_error(err, path, "3D Slicer segmentation (.seg.nrrd), not a CT")
