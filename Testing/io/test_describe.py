"""describe(): the facts `pelabelup info` prints, for volumes, DICOM folders and their troubles."""

from __future__ import annotations

import json

import numpy as np
import pytest
from io_helpers import one_line_error, rotation_direction

from PELabelUpLib.errors import InputError
from PELabelUpLib.geometry import Geometry
from PELabelUpLib.io import describe, orientation_code, write_dicom_series, write_volume
from PELabelUpLib.volume import CTVolume


@pytest.mark.parametrize(
    ("direction", "code"),
    [
        ((1, 0, 0, 0, 1, 0, 0, 0, 1), "LPS"),
        ((-1, 0, 0, 0, -1, 0, 0, 0, 1), "RAS"),
        ((1, 0, 0, 0, 0, 1, 0, -1, 0), "LIP"),  # coronal: j toward Inferior, k toward Posterior
        ((0, 0, 1, 1, 0, 0, 0, 1, 0), "PSL"),
        (rotation_direction("x", (20.0,)), "oblique"),
    ],
)
def test_orientation_code(direction, code):
    assert orientation_code(direction) == code


def test_nearest_orientation_code_of_an_oblique_grid():
    assert orientation_code(rotation_direction("x", (20.0,)), nearest=True) == "LPS"
    assert orientation_code(rotation_direction("z", (170.0,)), nearest=True) == "RAS"


def test_describe_a_volume_file(tmp_path, a_ct_volume):
    path = write_volume(a_ct_volume, tmp_path / "ct.nrrd")
    info = describe(path)
    json.dumps(info)  # printable as JSON
    g = a_ct_volume.geometry
    assert info["format"] == "NRRD"
    assert info["path"] == str(path)
    assert info["size"] == [16, 20, 12]
    assert info["shape_zyx"] == [12, 20, 16]
    assert info["spacing_mm"] == list(g.spacing_mm)
    assert info["origin_mm"] == list(g.origin_mm)
    assert info["orientation"] == "LPS"
    assert info["dtype"] == "int16"
    assert info["hu_min"] == a_ct_volume.hu.min()
    assert info["hu_max"] == a_ct_volume.hu.max()
    assert info["hu_percentiles"]["50"] == pytest.approx(np.percentile(a_ct_volume.hu, 50))
    assert info["extent_mm"] == pytest.approx([16 * 0.7, 20 * 0.8, 12 * 2.5])


def test_describe_a_dicom_folder_lists_its_series(tmp_path, a_ct_volume):
    g = a_ct_volume.geometry
    write_dicom_series(a_ct_volume, tmp_path / "ct", series_uid="1.2.3.10")
    write_dicom_series(a_ct_volume, tmp_path / "mr", series_uid="1.2.3.11", extra={"Modality": "MR"})
    info = describe(tmp_path)
    json.dumps(info)
    assert info["kind"] == "dicom"
    assert info["series_uid"] == "1.2.3.10"
    assert "error" not in info
    series = {s["series_uid"]: s for s in info["series"]}
    assert series["1.2.3.10"]["chosen"]
    assert not series["1.2.3.11"]["chosen"]
    assert (series["1.2.3.11"]["modality"], series["1.2.3.11"]["n_slices"]) == ("MR", 12)
    assert info["size"] == list(g.size)
    assert info["gantry_tilt_deg"] == 0.0


def test_describe_reports_why_a_dicom_folder_cannot_load(tmp_path, a_ct_volume):
    write_dicom_series(a_ct_volume, tmp_path, extra={"Modality": "MR"})
    info = describe(tmp_path)
    assert "not CT" in info["error"]
    assert info["series"][0]["modality"] == "MR"
    assert "size" not in info


def test_describe_an_oblique_volume(tmp_path, a_ct_volume):
    g = a_ct_volume.geometry
    oblique = CTVolume(
        a_ct_volume.hu, Geometry(g.size, g.spacing_mm, g.origin_mm, rotation_direction("xz", (15.0, 30.0)))
    )
    info = describe(write_volume(oblique, tmp_path / "oblique.mha"))
    assert info["orientation"] == "oblique"
    assert info["orientation_nearest"] == "LPS"
    np.testing.assert_allclose(info["direction"], oblique.geometry.direction, atol=1e-12)


def test_describe_a_missing_path(tmp_path):
    with pytest.raises(InputError) as err:
        describe(tmp_path / "nothing")
    one_line_error(err, tmp_path / "nothing", "not found")
