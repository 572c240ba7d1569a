"""Cohorts: both layouts written and read back, ground truth consistent on disk, resumable, parallel."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from PELabelUpLib.errors import InputError
from PELabelUpLib.io import load_ct, read_rspect
from PELabelUpLib.synthetic.cohort import GENERATOR_VERSION, case_seeds, generate_cohort, plan_cohort

SMALL = {"size_xy": (96, 96), "n_slices": 48, "spacing_mm": (1.4, 1.4, 2.5)}
HEX12 = re.compile(r"^[0-9a-f]{12}$")


def _read(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


@pytest.fixture(scope="module")
def a_nifti_cohort(tmp_path_factory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("cohort")
    rows = generate_cohort(out, plan_cohort(3, seed=7, overrides=SMALL), layout="nifti", workers=2)
    return out, rows


def test_case_seeds_are_stable_and_distinct():
    assert case_seeds(7, 5) == case_seeds(7, 5)
    assert len(set(case_seeds(7, 50))) == 50
    assert case_seeds(7, 3) != case_seeds(8, 3)
    with pytest.raises(ValueError, match="n_cases"):
        case_seeds(7, -1)


def test_nifti_cohort_files_and_index_agree(a_nifti_cohort):
    out, rows = a_nifti_cohort
    with (out / "cohort.csv").open() as f:
        on_disk = list(csv.DictReader(f))
    assert [r["case_id"] for r in on_disk] == [r["case_id"] for r in rows]
    assert len(rows) == 3
    for row in on_disk:
        folder = out / row["path"]
        ct = load_ct(folder / "ct.nii.gz")
        emboli = _read(folder / "emboli.nii.gz")
        arteries = _read(folder / "arteries.nii.gz")
        record = json.loads((folder / "case.json").read_text())
        assert ct.hu.shape == emboli.shape == arteries.shape == (48, 96, 96)
        assert np.all(arteries[emboli > 0] == 1), "every embolus voxel lies in an artery"
        slice_has_clot = (emboli > 0).reshape(emboli.shape[0], -1).any(axis=1)
        assert record["slice_labels"] == slice_has_clot.astype(int).tolist()
        assert record["positive"] == bool(slice_has_clot.any()) == bool(int(row["positive"]))
        assert sorted(np.unique(emboli[emboli > 0]).tolist()) == [e["label"] for e in record["emboli"]]
        assert record["study_labels"]["negative_exam_for_pe"] == int(not record["positive"])


def test_rerun_keeps_finished_cases_and_remakes_missing(a_nifti_cohort, tmp_path):
    out, rows = a_nifti_cohort
    requests = plan_cohort(3, seed=7, overrides=SMALL)
    first, second = out / rows[0]["path"], out / rows[1]["path"]
    kept_mtime = (first / "ct.nii.gz").stat().st_mtime_ns
    reference = _read(second / "ct.nii.gz")
    for f in second.iterdir():
        f.unlink()
    second.rmdir()
    again = generate_cohort(out, requests, layout="nifti", workers=1)
    assert [r["case_id"] for r in again] == [r["case_id"] for r in rows]
    assert (first / "ct.nii.gz").stat().st_mtime_ns == kept_mtime, "a finished case is not rewritten"
    np.testing.assert_array_equal(_read(second / "ct.nii.gz"), reference)
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "no temporary folder left behind"


@pytest.mark.parametrize("other", [{"contrast_phase": "mixed"}, {"size_xy": 128}, None])
def test_rerun_refuses_cases_that_other_options_made(a_nifti_cohort, other):
    out, rows = a_nifti_cohort
    first = out / rows[0]["path"]
    kept_mtime = (first / "ct.nii.gz").stat().st_mtime_ns
    overrides = {**SMALL, **other} if other else None
    with pytest.raises(InputError, match="options") as refused:
        generate_cohort(out, plan_cohort(3, seed=7, overrides=overrides), layout="nifti", workers=1)
    assert str(first / "case.json") in str(refused.value) and "new folder" in str(refused.value)
    assert (first / "ct.nii.gz").stat().st_mtime_ns == kept_mtime
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(r["case_id"] for r in rows)
    # naming the default phase asks for the same cases
    again = generate_cohort(out, plan_cohort(3, seed=7, overrides={**SMALL, "contrast_phase": "pulmonary"}),
                            layout="nifti", workers=1)
    assert [r["case_id"] for r in again] == [r["case_id"] for r in rows]
    assert (first / "ct.nii.gz").stat().st_mtime_ns == kept_mtime


@pytest.mark.parametrize("lost", ["masks", "train"])
def test_rspect_rerun_keeps_finished_studies_and_remakes_missing(tmp_path, lost):
    requests = plan_cohort(3, seed=9, overrides=SMALL)
    rows = generate_cohort(tmp_path, requests, layout="rspect", workers=1)
    train_csv = (tmp_path / "train.csv").read_text()
    kept = sorted((tmp_path / "train" / rows[0]["study_uid"]).rglob("*.dcm"))[0]
    kept_mtime = kept.stat().st_mtime_ns
    # an interrupted run: the DICOM is published before the masks, so a study can lack either half
    shutil.rmtree(tmp_path / lost / rows[1]["study_uid"])
    again = generate_cohort(tmp_path, requests, layout="rspect", workers=1)
    assert again == rows
    assert kept.stat().st_mtime_ns == kept_mtime, "a finished study is not rewritten"
    assert (tmp_path / "train" / rows[1]["study_uid"]).is_dir() and (tmp_path / "masks" / rows[1]["study_uid"]).is_dir()
    assert len(list((tmp_path / "train").iterdir())) == len(list((tmp_path / "masks").iterdir())) == 3
    assert (tmp_path / "train.csv").read_text() == train_csv


@pytest.mark.parametrize("layout", ["nifti", "rspect"])
@pytest.mark.parametrize("recorded", [None, GENERATOR_VERSION - 1])
def test_rerun_refuses_cases_of_another_generator_version(tmp_path, layout, recorded):
    requests = plan_cohort(2, seed=5, overrides=SMALL)
    generate_cohort(tmp_path, requests[:1], layout=layout, workers=1)
    (record_path,) = tmp_path.glob("*/case.json") if layout == "nifti" else tmp_path.glob("masks/*/case.json")
    record = json.loads(record_path.read_text())
    assert record["generator"]["version"] == GENERATOR_VERSION
    if recorded is None:
        del record["generator"]
    else:
        record["generator"]["version"] = recorded
    record_path.write_text(json.dumps(record))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(InputError, match="generator") as refused:
        generate_cohort(tmp_path, requests, layout=layout, workers=1)
    assert str(record_path) in str(refused.value)
    assert ("no version recorded" if recorded is None else f"version {recorded}") in str(refused.value)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before, "nothing was added to the mixed folder"


def test_rspect_cohort_reads_back_with_identical_labels(tmp_path):
    requests = plan_cohort(2, seed=3, overrides=SMALL | {"positive": True, "n_emboli": 2})
    rows = generate_cohort(tmp_path, requests, layout="rspect", workers=1)
    studies = {s.study_uid: s for s in read_rspect(tmp_path)}
    assert len(studies) == 2
    for row in rows:
        assert HEX12.match(row["study_uid"])
        record = json.loads((tmp_path / row["path"] / "case.json").read_text())
        study = studies[row["study_uid"]]
        np.testing.assert_array_equal(np.asarray(study.slice_labels, dtype=int), record["slice_labels"])
        assert study.study_labels["negative_exam_for_pe"] == 0
        volume = study.load()
        emboli = _read(tmp_path / row["path"] / "emboli.nii.gz")
        assert volume.hu.shape == emboli.shape
        # the DICOM series sits on the same grid as the ground-truth masks
        mask_geometry = sitk.ReadImage(str(tmp_path / row["path"] / "emboli.nii.gz"))
        assert np.allclose(volume.geometry.origin_mm, mask_geometry.GetOrigin(), atol=1e-3)
        assert np.allclose(volume.geometry.spacing_mm, mask_geometry.GetSpacing(), atol=1e-4)


def test_hybrid_cases_join_a_cohort(real_cta_dir, tmp_path):
    requests = plan_cohort(0, seed=5, n_hybrid=2, real_cta_dir=real_cta_dir)
    rows = generate_cohort(tmp_path, requests, layout="nifti", workers=1)
    assert [r["kind"] for r in rows] == ["hybrid", "hybrid"]
    real_mask = _read(real_cta_dir / "pulmonary_artery.nii.gz")
    for row in rows:
        emboli = _read(tmp_path / row["path"] / "emboli.nii.gz")
        assert np.all(real_mask[emboli > 0] > 0)


def test_plan_rejects_hybrid_without_real_data():
    with pytest.raises(ValueError, match="real_cta_dir"):
        plan_cohort(1, seed=0, n_hybrid=1)


def test_a_run_refused_before_any_case_leaves_no_folder(tmp_path):
    """The generator refuses a positive phantom on an 8 x 8 x 2 grid: the folders the run created go again, a
    folder that was there before stays."""
    tiny = {"size_xy": 8, "n_slices": 2, "n_emboli": 1}
    out = tmp_path / "new" / "cohort"
    with pytest.raises(ValueError, match="no pulmonary artery"):
        generate_cohort(out, plan_cohort(1, seed=1, overrides=tiny), workers=1)
    assert list(tmp_path.iterdir()) == []
    kept = tmp_path / "kept"
    kept.mkdir()
    with pytest.raises(ValueError, match="no pulmonary artery"):
        generate_cohort(kept, plan_cohort(1, seed=1, overrides=tiny), workers=1)
    assert [p.name for p in tmp_path.iterdir()] == ["kept"] and list(kept.iterdir()) == []
