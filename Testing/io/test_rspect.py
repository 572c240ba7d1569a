"""The RSPECT layout: writing studies and train.csv, reading them back, and the csv-versus-files refusals."""

from __future__ import annotations

import csv
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from io_helpers import GEOMETRIES, assert_same_geometry, ct_like_hu, one_line_error, rotation_direction

from PELabelUpLib.errors import InputError
from PELabelUpLib.geometry import Geometry
from PELabelUpLib.io import (
    RSPECT_COLUMNS,
    RspectIds,
    append_train_csv,
    complete_study_labels,
    describe,
    load_ct,
    new_rspect_id,
    read_rspect,
    write_rspect_study,
    write_train_csv,
)
from PELabelUpLib.volume import CTVolume

# pydicom warns that 12-character hex ids are no DICOM UIDs; RSPECT is like that, on purpose
pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR UI")

HEX12 = re.compile(r"^[0-9a-f]{12}$")
POSITIVE_LABELS = {"rv_lv_ratio_lt_1": 1, "central_pe": 1, "leftsided_pe": 1, "qa_motion": 1}


@dataclass
class WrittenDataset:
    root: Path
    volumes: list[CTVolume]
    slice_labels: list[list[bool]]
    rows: list[list[dict]]


@pytest.fixture
def a_dataset(tmp_path) -> WrittenDataset:
    """Two studies: a PE-positive one (slices 4-6) and a negative, oblique, smaller one; train.csv written."""
    root = tmp_path / "rspect"
    rng = np.random.default_rng(42)
    g1 = Geometry((16, 20, 12), (0.7, 0.7, 1.25), (-120.5, -140.25, -300.0))
    g2 = Geometry((14, 18, 9), (0.8, 0.8, 2.0), (-100.0, -110.0, -250.0), rotation_direction("x", (12.0,)))
    volumes = [CTVolume(ct_like_hu(g1.shape_zyx, 1), g1), CTVolume(ct_like_hu(g2.shape_zyx, 2), g2)]
    slice_labels = [[4 <= k <= 6 for k in range(12)], [False] * 9]
    rows = [
        write_rspect_study(root, volumes[0], slice_labels[0], POSITIVE_LABELS, rng=rng),
        write_rspect_study(root, volumes[1], slice_labels[1], {}, rng=rng),
    ]
    write_train_csv(root, rows[0] + rows[1])
    return WrittenDataset(root, volumes, slice_labels, rows)


def _csv_rows(root: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(root / "train.csv", newline="") as stream:
        reader = csv.DictReader(stream)
        return list(reader.fieldnames or []), list(reader)


def _rewrite_csv(root: Path, fieldnames: list[str], rows: list[dict[str, str]]) -> None:
    with open(root / "train.csv", "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=fieldnames, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def test_read_back_ids_labels_and_slice_order(a_dataset):
    studies = read_rspect(a_dataset.root)
    assert len(studies) == 2
    for study, rows, labels in zip(studies, a_dataset.rows, a_dataset.slice_labels, strict=True):
        assert study.study_uid == rows[0]["StudyInstanceUID"]
        assert study.series_uid == rows[0]["SeriesInstanceUID"]
        assert study.sop_uids == tuple(r["SOPInstanceUID"] for r in rows)  # k order
        assert study.slice_labels.dtype == np.bool_
        np.testing.assert_array_equal(study.slice_labels, labels)
        assert study.folder == a_dataset.root / "train" / study.study_uid / study.series_uid
    assert studies[0].study_labels == complete_study_labels(POSITIVE_LABELS, a_dataset.slice_labels[0])
    assert studies[0].study_labels["negative_exam_for_pe"] == 0
    assert studies[0].study_labels["qa_motion"] == 1
    assert studies[1].study_labels["negative_exam_for_pe"] == 1
    assert studies[1].n_positive_slices == 0


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_geometry_round_trip_through_the_layout(tmp_path, volume_on, geometry):
    volume = volume_on(geometry)
    labels = [k == 3 for k in range(geometry.size[2])]
    rows = write_rspect_study(tmp_path, volume, labels, POSITIVE_LABELS, rng=np.random.default_rng(1))
    write_train_csv(tmp_path, rows)
    (study,) = read_rspect(tmp_path)
    loaded = study.load()
    assert loaded.hu.dtype == np.int16
    np.testing.assert_array_equal(loaded.hu, volume.hu)
    assert_same_geometry(loaded.geometry, geometry, 1e-4, 1e-6)
    assert loaded.meta["slice_labels"] == labels


def test_slices_are_sorted_by_position_not_csv_order(a_dataset):
    header, rows = _csv_rows(a_dataset.root)
    shuffled = [rows[i] for i in np.random.default_rng(3).permutation(len(rows))]
    _rewrite_csv(a_dataset.root, header, shuffled)
    study = next(
        s for s in read_rspect(a_dataset.root) if s.study_uid == a_dataset.rows[0][0]["StudyInstanceUID"]
    )
    assert study.sop_uids == tuple(r["SOPInstanceUID"] for r in a_dataset.rows[0])
    np.testing.assert_array_equal(study.slice_labels, a_dataset.slice_labels[0])
    unsorted = read_rspect(a_dataset.root, sort_slices=False, study_uids=[study.study_uid])[0]
    assert unsorted.sop_uids == tuple(
        r["SOPInstanceUID"] for r in shuffled if r["StudyInstanceUID"] == study.study_uid
    )


def test_ids_are_12_hex_characters_everywhere(a_dataset):
    header, rows = _csv_rows(a_dataset.root)
    assert header == list(RSPECT_COLUMNS)
    assert all(HEX12.match(r[c]) for r in rows for c in RSPECT_COLUMNS[:3])
    files = sorted((a_dataset.root / "train").glob("*/*/*.dcm"))
    assert len(files) == len(rows) == 21
    for f in files:
        study, series, sop = f.parent.parent.name, f.parent.name, f.stem
        assert HEX12.match(study)
        assert HEX12.match(series)
        assert HEX12.match(sop)
        ds = pydicom.dcmread(f)
        assert (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID) == (study, series, sop)
        assert ds.file_meta.MediaStorageSOPInstanceUID == sop
    assert {(r["StudyInstanceUID"], r["SeriesInstanceUID"], r["SOPInstanceUID"]) for r in rows} == {
        (f.parent.parent.name, f.parent.name, f.stem) for f in files
    }


def test_public_pipeline_conventions_hold(a_dataset):
    """Code written for the Kaggle data: SOP id = last 12 characters before .dcm, sort by IPP z, read
    SliceThickness and Exposure, join labels from train.csv by SOP id."""
    _, rows = _csv_rows(a_dataset.root)
    label_of = {r["SOPInstanceUID"]: int(r["pe_present_on_image"]) for r in rows}
    study_uid = a_dataset.rows[0][0]["StudyInstanceUID"]
    paths = list((a_dataset.root / "train" / study_uid).glob("*/*.dcm"))
    slices = [pydicom.dcmread(p) for p in paths]
    order = np.argsort([float(ds.ImagePositionPatient[2]) for ds in slices])
    sops = [str(paths[i])[-16:-4] for i in order]
    assert [label_of[s] for s in sops] == [int(v) for v in a_dataset.slice_labels[0]]
    assert [slices[i].SOPInstanceUID for i in order] == sops
    assert all(float(ds.SliceThickness) == 1.25 and int(ds.Exposure) > 0 for ds in slices)
    hu = np.stack(
        [
            slices[i].pixel_array * float(slices[i].RescaleSlope) + float(slices[i].RescaleIntercept)
            for i in order
        ]
    )
    np.testing.assert_array_equal(hu, a_dataset.volumes[0].hu)


def test_study_and_series_folders_load_with_load_ct(a_dataset):
    study = read_rspect(a_dataset.root)[1]
    for folder in (study.folder, study.folder.parent):
        volume = load_ct(folder)
        np.testing.assert_array_equal(volume.hu, a_dataset.volumes[1].hu)
        assert_same_geometry(volume.geometry, a_dataset.volumes[1].geometry)
    loaded = read_rspect(a_dataset.root)[0].load()
    np.testing.assert_array_equal(loaded.hu, a_dataset.volumes[0].hu)
    assert loaded.meta["slice_labels"] == a_dataset.slice_labels[0]
    assert loaded.meta["study_labels"]["central_pe"] == 1


def test_dataset_root_is_not_a_volume(a_dataset):
    with pytest.raises(InputError) as err:
        load_ct(a_dataset.root)
    one_line_error(err, a_dataset.root, "RSPECT dataset root", "read_rspect")


def test_describe_a_dataset_root(a_dataset):
    info = describe(a_dataset.root)
    assert info["kind"] == "rspect"
    assert (info["n_studies"], info["n_slices"], info["n_positive_slices"]) == (2, 21, 3)
    assert (info["n_pe_positive_studies"], info["n_negative_studies"], info["n_indeterminate_studies"]) == (
        1,
        1,
        0,
    )


def test_ids_are_deterministic_from_the_rng():
    assert new_rspect_id(np.random.default_rng(5)) == new_rspect_id(np.random.default_rng(5))
    assert HEX12.match(new_rspect_id(np.random.default_rng(6)))
    ids = RspectIds.new(np.random.default_rng(5), 30)
    assert ids == RspectIds.new(np.random.default_rng(5), 30)
    assert len({ids.study_uid, ids.series_uid, *ids.sop_uids}) == 32


def test_explicit_ids(tmp_path, a_ct_volume):
    ids = RspectIds("00268ff88746", "0a1b2c3d4e5f", tuple(f"{k:012x}" for k in range(12)))
    rows = write_rspect_study(tmp_path, a_ct_volume, [False] * 12, {}, ids=ids)
    assert [r["SOPInstanceUID"] for r in rows] == list(ids.sop_uids)
    assert (tmp_path / "train" / "00268ff88746" / "0a1b2c3d4e5f" / "00000000000b.dcm").is_file()
    with pytest.raises(ValueError, match="12 lowercase hex"):
        write_rspect_study(
            tmp_path / "b", a_ct_volume, [False] * 12, {}, ids=RspectIds("ABC", "x", ids.sop_uids)
        )


def test_append_train_csv(tmp_path, a_dataset):
    root = a_dataset.root
    (root / "train.csv").unlink()
    write_train_csv(root, a_dataset.rows[0])
    append_train_csv(root, a_dataset.rows[1])
    assert [s.study_uid for s in read_rspect(root)] == [
        a_dataset.rows[0][0]["StudyInstanceUID"],
        a_dataset.rows[1][0]["StudyInstanceUID"],
    ]
    with pytest.raises(ValueError, match="more than one row"):
        append_train_csv(root, a_dataset.rows[1])
    assert sorted(p.name for p in root.iterdir()) == ["train", "train.csv"]  # no temporary left behind


# ---- labels the writer refuses -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("slice_labels", "study_labels", "match"),
    [
        pytest.param([True, False], {"negative_exam_for_pe": 1}, "positive slice", id="positive-but-negative"),
        pytest.param([True, False], {"central_pe": 1}, "rv_lv_ratio", id="no-rv-lv"),
        pytest.param([True, False], {"rv_lv_ratio_lt_1": 1}, "central_pe / leftsided_pe", id="no-side"),
        pytest.param([False, False], {"central_pe": 1}, "must have central_pe = 0", id="negative-with-pe-column"),
        pytest.param([False, False], {"negative_exam_for_pe": 0}, "needs at least one positive slice", id="positive-without-slice"),
        pytest.param([False, False], {"negative_exam_for_pe": 1, "indeterminate": 1}, "both", id="negative-and-indeterminate"),
        pytest.param([False, False], {"big_pe": 1}, "unknown study label", id="unknown"),
        pytest.param([False, False], {"qa_motion": 2}, "0 or 1", id="not-binary"),
    ],
)  # fmt: skip
def test_label_rules(slice_labels, study_labels, match):
    with pytest.raises(ValueError, match=match):
        complete_study_labels(study_labels, slice_labels)


def test_indeterminate_study_defaults(a_ct_volume):
    labels = complete_study_labels({"indeterminate": 1, "qa_contrast": 1}, [False] * 3)
    assert labels["negative_exam_for_pe"] == 0
    assert labels["indeterminate"] == 1
    assert labels["qa_contrast"] == 1


def test_writer_refuses_wrong_label_count_and_sagittal_slices(tmp_path, a_ct_volume):
    with pytest.raises(ValueError, match="11 slice labels"):
        write_rspect_study(tmp_path, a_ct_volume, [False] * 11, {}, rng=np.random.default_rng(0))
    g = a_ct_volume.geometry
    sagittal = CTVolume(
        a_ct_volume.hu, Geometry(g.size, g.spacing_mm, g.origin_mm, rotation_direction("y", (90.0,)))
    )
    with pytest.raises(ValueError, match="roughly axial"):
        write_rspect_study(tmp_path, sagittal, [False] * 12, {}, rng=np.random.default_rng(0))


# ---- csv versus files ----------------------------------------------------------------------------------------


def test_row_without_file(a_dataset):
    row = a_dataset.rows[0][5]
    missing = (
        a_dataset.root
        / "train"
        / row["StudyInstanceUID"]
        / row["SeriesInstanceUID"]
        / f"{row['SOPInstanceUID']}.dcm"
    )
    missing.unlink()
    with pytest.raises(InputError) as err:
        read_rspect(a_dataset.root)
    one_line_error(err, missing, "listed in train.csv (line 7)", "missing")


def test_file_without_row(a_dataset):
    row = a_dataset.rows[1][0]
    folder = a_dataset.root / "train" / row["StudyInstanceUID"] / row["SeriesInstanceUID"]
    stray = folder / "0123456789ab.dcm"
    shutil.copy(folder / f"{row['SOPInstanceUID']}.dcm", stray)
    with pytest.raises(InputError) as err:
        read_rspect(a_dataset.root)
    one_line_error(err, stray, "has no row in train.csv")


def test_file_name_that_is_no_sop_id(a_dataset):
    row = a_dataset.rows[1][0]
    folder = a_dataset.root / "train" / row["StudyInstanceUID"] / row["SeriesInstanceUID"]
    odd = folder / "IMG0001.dcm"
    shutil.copy(folder / f"{row['SOPInstanceUID']}.dcm", odd)
    with pytest.raises(InputError) as err:
        read_rspect(a_dataset.root)
    one_line_error(err, odd, "<SOPInstanceUID>.dcm")


def test_missing_column(a_dataset):
    header, rows = _csv_rows(a_dataset.root)
    _rewrite_csv(a_dataset.root, [c for c in header if c != "central_pe"], rows)
    with pytest.raises(InputError) as err:
        read_rspect(a_dataset.root)
    one_line_error(err, a_dataset.root / "train.csv", "missing column(s) central_pe")


def test_label_not_binary(a_dataset):
    header, rows = _csv_rows(a_dataset.root)
    rows[3]["pe_present_on_image"] = "0.7"
    _rewrite_csv(a_dataset.root, header, rows)
    with pytest.raises(InputError) as err:
        read_rspect(a_dataset.root)
    one_line_error(err, a_dataset.root / "train.csv", "line 5", "pe_present_on_image", "not 0 or 1")


def test_exam_label_differs_within_a_study(a_dataset):
    header, rows = _csv_rows(a_dataset.root)
    rows[2]["rv_lv_ratio_lt_1"] = "0"
    _rewrite_csv(a_dataset.root, header, rows)
    with pytest.raises(InputError) as err:
        read_rspect(a_dataset.root)
    one_line_error(err, a_dataset.root / "train.csv", "line 4", "rv_lv_ratio_lt_1", "differs", "line 2")


def test_id_that_is_not_rspect(a_dataset):
    header, rows = _csv_rows(a_dataset.root)
    rows[0]["SOPInstanceUID"] = rows[0]["SOPInstanceUID"].upper() + "0"
    _rewrite_csv(a_dataset.root, header, rows)
    with pytest.raises(InputError) as err:
        read_rspect(a_dataset.root)
    one_line_error(err, a_dataset.root / "train.csv", "line 2", "not an RSPECT id")


def test_header_id_that_disagrees(a_dataset):
    row = a_dataset.rows[0][2]
    path = (
        a_dataset.root
        / "train"
        / row["StudyInstanceUID"]
        / row["SeriesInstanceUID"]
        / f"{row['SOPInstanceUID']}.dcm"
    )
    ds = pydicom.dcmread(path)
    ds.SOPInstanceUID = "ffffffffffff"
    ds.save_as(path)
    with pytest.raises(InputError) as err:
        read_rspect(a_dataset.root)
    one_line_error(err, path, "header SOPInstanceUID", "does not match")


def test_missing_csv(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(InputError) as err:
        read_rspect(tmp_path)
    one_line_error(err, tmp_path / "train.csv", "not found")
