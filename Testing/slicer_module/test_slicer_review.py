"""The module Logic's review session on a real headless MRML scene: worklist -> analysis -> edit -> export ->
next case, with the real output of a ``pelabelup analyze`` child and a real datastore."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")

from PELabelUpLib.datastore import Datastore, image_hash  # noqa: E402
from PELabelUpLib.errors import InputError  # noqa: E402
from PELabelUpLib.io import load_ct, read_label_file  # noqa: E402
from PELabelUpLib.mrml import PE_PSEUDOMASK, create_headless_scene, load_ct_node, set_segment_mask  # noqa: E402
from PELabelUpLib.mrml.export import ct_volume_of  # noqa: E402
from PELabelUpLib.mrml.grid import geometry_of, volume_array  # noqa: E402
from PELabelUpLib.mrml.views import composite_nodes, slice_nodes  # noqa: E402
from PELabelUpLib.slicer_review import ReviewSession  # noqa: E402


@pytest.fixture
def a_worklist(tmp_path: Path, an_analysed_study) -> Path:
    """``study-a`` (analysed) and ``study-b`` (the same CT, not analysed) in a fresh worklist folder."""
    folder = tmp_path / "worklist"
    shutil.copytree(an_analysed_study.study.parent, folder)
    shutil.copy(folder / "study-a.nii.gz", folder / "study-b.nii.gz")
    result = folder / "analysis" / "study-a" / "result.json"  # as if analysed here: the input is this copy
    result.write_text(result.read_text().replace(json.dumps(str(an_analysed_study.study)),
                                                 json.dumps(str(folder / "study-a.nii.gz"))))
    return folder


@pytest.fixture
def a_session() -> ReviewSession:
    return ReviewSession(create_headless_scene(view_size_px=(64, 64)))


def test_the_review_loop(a_session, a_worklist, tmp_path):
    datastore = tmp_path / "datastore"
    study = a_session.next_case(a_worklist, datastore)
    assert study.study_id == "study-a", "the analysed study comes first"
    review = a_session.review
    assert review is not None and review.ct is a_session.case.ct
    assert a_session.correctable_segments()[0] == (PE_PSEUDOMASK.segment_id, PE_PSEUDOMASK.name)
    assert a_session.analysis_input(review.ct, tmp_path / "work") == a_worklist / "study-a.nii.gz"
    assert a_session.output_folder(review.ct, tmp_path / "work") == tmp_path / "work" / "analysis", \
        "study-a's worklist analysis folder exists: a re-analysis goes elsewhere"

    original = read_label_file(a_worklist / "analysis" / "study-a" / "pseudomask.nii.gz")[0] > 0
    added = np.zeros_like(original)
    added[2:5, 10:14, 10:14] = True
    set_segment_mask(review.segmentation, PE_PSEUDOMASK.segment_id, added, review.ct, mode="paint")
    record = a_session.export(datastore, "study-a", "Dr. Test", study_label=False)
    assert (record.version, record.reviewer, record.study_label) == (1, "Dr. Test", False)
    assert record.label_decision == ("changed" if review.record.pe_probability >= 0.5 else "confirmed")
    final = read_label_file(record.final_mask_path)[0] > 0
    assert np.array_equal(final, original | added)
    assert record.image_hash == image_hash(load_ct(a_worklist / "study-a.nii.gz")), \
        "the image is identified as a command-line export of the same file would be"
    assert set(record.original_masks) >= {"pseudomask", "arteries"}

    assert a_session.next_case(a_worklist, datastore).study_id == "study-b"
    assert a_session.review is None and a_session.case.case_id == "study-b"
    assert a_session.output_folder(a_session.case.ct, tmp_path / "work") == a_worklist / "analysis" / "study-b"
    assert a_session.next_case(a_worklist, datastore) is None, "study-b was passed over, study-a is exported"
    assert a_session.passed_over == ["study-b"]
    assert Datastore(datastore, create=False).case_ids() == {"study-a"}


def test_a_study_that_cannot_be_opened_is_passed_over(a_session, a_worklist, tmp_path):
    """The unreadable study's one-line error is raised once; the next click opens the study after it."""
    datastore = tmp_path / "datastore"
    assert a_session.next_case(a_worklist, datastore).study_id == "study-a"
    (a_worklist / "study-b.nii.gz").write_bytes(b"not an image")
    with pytest.raises(InputError, match="study-b.nii.gz"):
        a_session.next_case(a_worklist, datastore)
    assert a_session.case is None and a_session.passed_over == ["study-a", "study-b"]
    shutil.copy(a_worklist / "study-a.nii.gz", a_worklist / "study-c.nii.gz")
    assert a_session.next_case(a_worklist, datastore).study_id == "study-c"


def test_a_changed_volume_is_analysed_from_a_copy_of_its_voxels(a_session, a_worklist, tmp_path):
    a_session.next_case(a_worklist, tmp_path / "datastore")
    ct = a_session.case.ct
    voxels = volume_array(ct)
    voxels[0, 0, 0] += 100
    ct.GetImageData().Modified()
    written = a_session.analysis_input(ct, tmp_path / "work")
    assert written == tmp_path / "work" / "input.nrrd"
    copy = load_ct(written)
    assert np.array_equal(copy.hu, voxels)
    assert copy.geometry.same_grid(geometry_of(ct), tol=1e-9)
    record = a_session.export(tmp_path / "datastore", "study-a", "me", True)
    assert record.image_hash == image_hash(ct_volume_of(ct)) != image_hash(load_ct(a_worklist / "study-a.nii.gz")), \
        "a changed CT is exported as the scene holds it"


def test_display_and_navigation_act_on_the_scene(a_session, a_worklist, tmp_path):
    a_session.next_case(a_worklist, tmp_path / "datastore")
    a_session.set_heatmap_display(0.3, 0.8)
    display = a_session.review.heatmap.GetDisplayNode()
    assert display.GetLowerThreshold() == pytest.approx(0.3) and display.GetApplyThreshold()
    assert {round(n.GetForegroundOpacity(), 6) for n in composite_nodes(a_session.logics.scene)} == {0.8}
    ras = a_session.jump_to_slice(7)
    red = next(n for n in slice_nodes(a_session.logics.scene) if n.GetLayoutName() == "Red")
    assert red.GetSliceOffset() == pytest.approx(ras[2], abs=1e-3)
    if a_session.review.emboli_table.GetNumberOfRows():
        assert np.all(np.isfinite(a_session.center_on_embolus(0)))
    with pytest.raises(ValueError, match="outside"):
        a_session.jump_to_slice(10_000)
    a_session.logics.scene.RemoveNode(a_session.review.heatmap)  # the reader deleted the heatmap
    a_session.set_heatmap_display(0.5, 0.4)
    assert {round(n.GetForegroundOpacity(), 6) for n in composite_nodes(a_session.logics.scene)} == {0.4}


def test_closing_a_case_removes_what_the_session_loaded(a_session, a_worklist, tmp_path):
    scene = a_session.logics.scene
    before = scene.GetNumberOfNodes()
    a_session.next_case(a_worklist, tmp_path / "datastore")
    assert scene.GetNumberOfNodes() > before
    a_session.close_case()
    classes = {"vtkMRMLScalarVolumeNode", "vtkMRMLSegmentationNode", "vtkMRMLTableNode", "vtkMRMLPlotChartNode"}
    assert all(scene.GetNumberOfNodesByClass(c) == 0 for c in classes)
    assert (a_session.case, a_session.review) == (None, None)


def test_a_users_volume_is_analysed_beside_the_run(a_session, a_worklist, tmp_path):
    node = load_ct_node(a_session.logics, a_worklist / "study-b.nii.gz", name="mine")
    case = a_session.use_volume(node)
    assert (case.case_id, case.source, case.loaded_here) == (None, None, False)
    assert a_session.output_folder(node, tmp_path / "work") == tmp_path / "work" / "analysis"
    assert a_session.analysis_input(node, tmp_path / "work") == tmp_path / "work" / "input.nrrd"
    a_session.close_case()
    assert node.GetScene() is a_session.logics.scene, "a volume the user loaded stays"


@pytest.mark.parametrize(("call", "message"), [
    (lambda s, d: s.export(d, "case", "me", True), "no analysis is loaded"),
    (lambda s, d: s.next_case(".", d), "choose a worklist folder"),
    (lambda s, d: s.set_heatmap_display(0.2, 0.5), "no analysis is loaded"),
    (lambda s, d: s.use_volume(None), "no image data"),
])
def test_misuse_is_refused_with_the_bad_value(a_session, tmp_path, call, message):
    with pytest.raises(ValueError, match=message):
        call(a_session, tmp_path / "datastore")


def test_export_refuses_an_empty_case_id_an_unset_folder_and_a_foreign_segment(a_session, a_worklist, tmp_path):
    a_session.next_case(a_worklist, tmp_path / "datastore")
    with pytest.raises(ValueError, match="case ID is empty"):
        a_session.export(tmp_path / "datastore", "  ", "me", True)
    with pytest.raises(ValueError, match="choose a datastore folder"):
        a_session.export("", "study-a", "me", True)
    with pytest.raises(ValueError, match="'pulmonary_arteries_typo'"):
        a_session.export(tmp_path / "datastore", "study-a", "me", True, segment_id="pulmonary_arteries_typo")
    assert not a_session.exported


@pytest.mark.slow
def test_an_artery_segment_is_the_territory_of_the_next_analysis(a_session, a_worklist, an_analysed_study, tmp_path):
    """The review's "Pulmonary arteries" corrected (or another tool's artery segment) goes to the worker as the
    territory: the next analysis looks for clot inside it only."""
    from analysis_helpers import clot_study

    from PELabelUpLib.analysis.territory import read_territory
    from PELabelUpLib.mrml import PULMONARY_ARTERIES, add_segmentation
    from PELabelUpLib.slicer_worker import AnalysisWorker, build_serve_command

    ct = load_ct_node(a_session.logics, a_worklist / "study-a.nii.gz", name="study-a")
    clot = clot_study()[1]
    zz, yy, xx = np.nonzero(clot)
    around = np.zeros(clot.shape, np.uint8)
    around[zz.min() - 2:zz.max() + 3, yy.min() - 5:yy.max() + 6, xx.min() - 5:xx.max() + 6] = 1
    elsewhere = np.zeros(clot.shape, np.uint8)
    elsewhere[:4, 4:40, 4:36] = 1
    segmentation = add_segmentation(a_session.logics.scene, ct, {PULMONARY_ARTERIES: around}, "arteries")
    other = add_segmentation(a_session.logics.scene, ct, {PULMONARY_ARTERIES: elsewhere}, "other arteries")

    written = a_session.artery_input(segmentation, PULMONARY_ARTERIES.segment_id, ct, tmp_path / "work-a")
    np.testing.assert_array_equal(read_territory(written, geometry_of(ct)).mask, around)
    set_segment_mask(other, PULMONARY_ARTERIES.segment_id, np.zeros(clot.shape, np.uint8), ct)
    with pytest.raises(ValueError, match="artery segment 'Pulmonary arteries' of 'other arteries' is empty"):
        a_session.artery_input(other, PULMONARY_ARTERIES.segment_id, ct, tmp_path / "work-b")
    with pytest.raises(ValueError, match="'no-such-segment' not in segmentation"):
        a_session.artery_input(segmentation, "no-such-segment", ct, tmp_path / "work-b")
    assert not (tmp_path / "work-b").exists()

    worker = AnalysisWorker(build_serve_command(python_executable=sys.executable, device="cpu",
                                                models_dir=an_analysed_study.models_dir))
    worker.start()
    try:
        with pytest.raises(ValueError, match="artery mask not found"):
            worker.submit(a_session.analysis_input(ct, tmp_path), tmp_path / "out", arteries=tmp_path / "none.nrrd")
        job = worker.submit(a_session.analysis_input(ct, tmp_path), tmp_path / "out", arteries=written)
        job.wait(timeout_s=300)
        assert job.state == "done", "\n".join(worker.stderr_lines)
    finally:
        worker.close()
    record = json.loads((tmp_path / "out" / "result.json").read_text())
    assert record["territory"]["file"] == "arteries-given.nrrd" and record["territory"]["resampled"] is False
    arteries, _ = read_label_file(tmp_path / "out" / "arteries.nii.gz")
    np.testing.assert_array_equal(arteries, around)
    pseudo, _ = read_label_file(tmp_path / "out" / "pseudomask.nii.gz")
    assert pseudo[clot].mean() > 0.8 and not pseudo[around == 0].any()
