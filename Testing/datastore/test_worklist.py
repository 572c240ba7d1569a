"""The "Next case" worklist: which folder entries are studies, the review order, what counts as reviewed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from datastore_helpers import ct_volume

from PELabelUpLib.datastore import Worklist
from PELabelUpLib.errors import InputError
from PELabelUpLib.io import load_ct, write_dicom_series, write_volume

REVIEW = {"reviewer": "r", "study_label": True, "label_decision": "confirmed", "model_versions": {}}

# study -> P(PE) from its analysis (None: not analysed); |p - 0.5| orders them: 0.5 < {0.25, 0.75} < 0.9 < 0.0
PROBABILITIES = {"dicom-study": 0.25, "e": 0.75, "a": 0.9, "b": 0.5, "c": 0.0, "d": None, "f": None}
EXPECTED_ORDER = ["b", "dicom-study", "e", "a", "c", "d", "f"]


def analyse(root: Path, study_id: str, pe_probability: object) -> Path:
    """What ``pelabelup analyze`` leaves for a study: ``<root>/<study_id>/result.json``."""
    path = root / study_id / "result.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pe_probability": pe_probability, "slice_probabilities": []}))
    return path


@pytest.fixture
def a_worklist(tmp_path: Path) -> Path:
    """Studies as NIfTI/NRRD/MetaImage files and a DICOM folder, some analysed, plus entries that are not studies."""
    folder = tmp_path / "worklist"
    volume = ct_volume(0)
    for name in ["a.nii.gz", "b.nrrd", "c.nii", "d.mha", "e.nii.gz", "f.nii.gz"]:
        write_volume(volume, folder / name)
    write_dicom_series(volume, folder / "dicom-study" / "series-1")
    for study_id, p in PROBABILITIES.items():
        if p is not None:
            analyse(folder / "analysis", study_id, p)
    analyse(folder / "analysis", "no-such-study", 0.5)  # an analysis without its study: ignored
    (folder / "empty-folder").mkdir()
    (folder / "notes.csv").write_text("study,comment\n")
    write_volume(volume, folder / ".hidden.nii.gz")
    write_volume(volume, folder / "_excluded.nii.gz")
    return folder


def test_studies_come_most_uncertain_first_unanalysed_last(a_worklist):
    studies = Worklist(a_worklist).studies()
    assert [s.study_id for s in studies] == EXPECTED_ORDER
    assert {s.study_id: s.pe_probability for s in studies} == PROBABILITIES
    by_id = {s.study_id: s for s in studies}
    assert by_id["dicom-study"].path == a_worklist / "dicom-study" and by_id["d"].path == a_worklist / "d.mha"
    assert by_id["d"].result_path is None and by_id["a"].result_path == a_worklist / "analysis" / "a" / "result.json"
    loaded = load_ct(by_id["dicom-study"].path)  # a study path is what the loader takes
    np.testing.assert_array_equal(loaded.hu, load_ct(by_id["a"].path).hu)


def test_next_unreviewed_skips_exported_studies(a_worklist, a_datastore):
    worklist = Worklist(a_worklist)
    volume = ct_volume(0)
    mask = np.zeros(volume.geometry.shape_zyx, np.uint8)
    seen = []
    while (study := worklist.next_unreviewed(a_datastore)) is not None:
        seen.append(study.study_id)
        a_datastore.export(study.study_id, volume, mask, **REVIEW)
        assert len(seen) <= len(EXPECTED_ORDER)
    assert seen == EXPECTED_ORDER
    assert worklist.pending(a_datastore) == []


def test_skip_passes_over_studies_left_without_export(a_worklist, a_datastore):
    worklist = Worklist(a_worklist)
    assert worklist.next_unreviewed(a_datastore).study_id == "b"
    assert worklist.next_unreviewed(a_datastore, skip={"b"}).study_id == "dicom-study"
    assert [s.study_id for s in worklist.pending(a_datastore, skip={"b", "e"})] == ["dicom-study", "a", "c", "d", "f"]


def test_ties_keep_a_stable_order_by_study_id(tmp_path):
    folder = tmp_path / "worklist"
    for name in ["z", "m", "a", "k"]:
        write_volume(ct_volume(0), folder / f"{name}.nii.gz")
        analyse(folder / "analysis", name, 0.3 if name in {"z", "a"} else 0.7)  # all |p - 0.5| = 0.2
    assert [s.study_id for s in Worklist(folder).studies()] == ["a", "k", "m", "z"]


def test_analysis_outputs_can_live_elsewhere(a_worklist, tmp_path):
    elsewhere = tmp_path / "analysis-runs"
    analyse(elsewhere, "f", 0.5)
    studies = Worklist(a_worklist, analysis_dir=elsewhere).studies()
    assert [s.study_id for s in studies][0] == "f"
    assert "analysis" not in {s.study_id for s in studies}
    assert sum(s.pe_probability is not None for s in studies) == 1


@pytest.mark.parametrize(("content", "reason"), [
    ("{not json", "not valid JSON"),
    (json.dumps({"pe_probability": 1.5}), "must lie in"),
    (json.dumps({"pe_probability": "high"}), "finite number"),
    (json.dumps({"slice_probabilities": []}), "finite number"),
    (json.dumps([0.5]), "finite number"),
])
def test_a_malformed_result_json_is_named(a_worklist, content, reason):
    path = a_worklist / "analysis" / "a" / "result.json"
    path.write_text(content)
    with pytest.raises(InputError, match=reason) as caught:
        Worklist(a_worklist).studies()
    assert str(caught.value).startswith(str(path))


def test_two_studies_with_one_id_are_refused(a_worklist):
    write_volume(ct_volume(0), a_worklist / "a.nrrd")
    with pytest.raises(InputError, match="study id 'a' also names a.nii.gz"):
        Worklist(a_worklist).studies()


def test_a_missing_worklist_folder_is_refused(tmp_path):
    with pytest.raises(InputError, match="worklist folder not found"):
        Worklist(tmp_path / "nowhere")
