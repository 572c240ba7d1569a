"""An analysis folder loaded into a real scene: CT via the Volumes logic, heatmap layer, segments, tables."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import vtk
from mrml_helpers import AnalysisFolder, oblique_geometry, write_analysis_folder

from PELabelUpLib.errors import InputError
from PELabelUpLib.geometry import Geometry
from PELabelUpLib.io import NIFTI_TOLERANCE_MM, load_ct, read_label_file, write_dicom_series, write_volume
from PELabelUpLib.mrml import (
    PE_PSEUDOMASK,
    PE_SEGMENTER,
    PULMONARY_ARTERIES,
    SlicerLogics,
    add_segmentation,
    corrected_mask,
    load_analysis,
    load_ct_node,
    read_analysis_record,
)
from PELabelUpLib.mrml.grid import LPS_TO_RAS, geometry_of, ijk_to_ras, volume_array
from PELabelUpLib.mrml.hierarchy import LEVEL_STUDY
from PELabelUpLib.terminology import parse_terminology

slicer = pytest.importorskip("slicer")


def test_ct_enters_through_the_volumes_logic_with_lps_turned_into_ras(
        a_scene: SlicerLogics, an_analysis_folder: AnalysisFolder) -> None:
    review = load_analysis(a_scene, an_analysis_folder.folder)
    g = an_analysis_folder.ct.geometry
    np.testing.assert_array_equal(volume_array(review.ct), an_analysis_folder.ct.hu)
    m = ijk_to_ras(review.ct)
    # an index maps to RAS = flip(LPS) of the geometry's world point, for the grid's corners
    corners = np.array([[0, 0, 0], [g.size[0] - 1, 0, 0], [0, g.size[1] - 1, g.size[2] - 1]], float)
    ras = corners @ m[:3, :3].T + m[:3, 3]
    np.testing.assert_allclose(ras, g.index_to_world(corners) @ LPS_TO_RAS, atol=NIFTI_TOLERANCE_MM)
    assert review.ct.GetStorageNode() is not None  # loaded from its file, as Slicer loads volumes


def test_segments_equal_the_analysis_masks_voxel_for_voxel(
        a_scene: SlicerLogics, an_analysis_folder: AnalysisFolder) -> None:
    review = load_analysis(a_scene, an_analysis_folder.folder)
    expected = {PE_PSEUDOMASK: an_analysis_folder.pseudomask, PE_SEGMENTER: an_analysis_folder.segmentation,
                PULMONARY_ARTERIES: an_analysis_folder.arteries}
    assert review.segment_ids == {spec.name: spec.segment_id for spec in expected}
    for spec, mask in expected.items():
        got = corrected_mask(review.segmentation, spec.segment_id, review.ct)
        assert got.dtype == bool
        np.testing.assert_array_equal(got, mask.astype(bool), err_msg=spec.name)
    assert review.segmentation.GetNodeReference(
        review.segmentation.GetReferenceImageGeometryReferenceRole()) is review.ct


def test_segments_carry_names_colours_and_snomed_terminology(
        a_scene: SlicerLogics, an_analysis_folder: AnalysisFolder) -> None:
    review = load_analysis(a_scene, an_analysis_folder.folder)
    segmentation = review.segmentation.GetSegmentation()
    embolus_codes = set()
    for spec in (PE_PSEUDOMASK, PE_SEGMENTER, PULMONARY_ARTERIES):
        segment = segmentation.GetSegment(spec.segment_id)
        assert segment.GetName() == spec.name
        np.testing.assert_allclose(segment.GetColor(), spec.color)
        codes = parse_terminology(segment.GetTerminology())
        if spec is PULMONARY_ARTERIES:
            assert codes["type"][:2] == ("SCT", "81040000")
        else:
            embolus_codes.add((codes["category"][1], codes["type"][1], codes["region"][1]))
    assert embolus_codes == {("49755003", "55584005", "81040000")}


def test_terminology_strings_are_valid_for_slicer_terminology_logic() -> None:
    entry = slicer.vtkSlicerTerminologyEntry()
    logic = slicer.vtkSlicerTerminologiesModuleLogic()
    assert logic.DeserializeTerminologyEntry(PE_PSEUDOMASK.terminology, entry)
    assert entry.GetTypeObject().GetCodeValue() == "55584005"
    assert entry.GetCategoryObject().GetCodeValue() == "49755003"
    assert entry.GetAnatomicRegionObject().GetCodeValue() == "81040000"


def test_heatmap_is_the_foreground_on_the_cts_grid(a_scene: SlicerLogics, an_analysis_folder: AnalysisFolder) -> None:
    review = load_analysis(a_scene, an_analysis_folder.folder, heat_threshold=0.3, heat_opacity=0.6)
    np.testing.assert_array_equal(ijk_to_ras(review.heatmap), ijk_to_ras(review.ct))
    np.testing.assert_allclose(volume_array(review.heatmap), an_analysis_folder.heatmap, atol=1e-7)
    display = review.heatmap.GetDisplayNode()
    assert display.GetColorNode().GetName() == "PELabelUp inferno"
    assert (display.GetWindow(), display.GetLevel()) == pytest.approx((1.0, 0.5))
    assert display.GetApplyThreshold() == 1
    assert display.GetLowerThreshold() == pytest.approx(0.3)
    for logic in a_scene.slice_logics.values():
        composite = logic.GetSliceCompositeNode()
        assert composite.GetBackgroundVolumeID() == review.ct.GetID()
        assert composite.GetForegroundVolumeID() == review.heatmap.GetID()
        assert composite.GetForegroundOpacity() == pytest.approx(0.6)


def test_probability_tables_and_study_placement(a_scene: SlicerLogics, an_analysis_folder: AnalysisFolder) -> None:
    review = load_analysis(a_scene, an_analysis_folder.folder)
    record = an_analysis_folder.record
    for node in (review.ct, review.heatmap, review.segmentation):
        assert float(node.GetAttribute("PELabelUp.PEProbability")) == pytest.approx(record["pe_probability"])
    assert review.emboli_table.GetTable().GetNumberOfRows() == len(record["emboli"])
    slices = review.slice_table.GetTable()
    assert slices.GetNumberOfRows() == an_analysis_folder.ct.geometry.size[2]
    got = [slices.GetValueByName(k, "PE probability").ToDouble() for k in range(slices.GetNumberOfRows())]
    np.testing.assert_allclose(got, record["slice_probabilities"])
    assert review.slice_chart.GetNthPlotSeriesNodeID(0) == review.slice_series.GetID()
    assert review.slice_series.GetTableNode() is review.slice_table

    shn = a_scene.scene.GetSubjectHierarchyNode()
    assert shn.GetItemLevel(review.study_item) == LEVEL_STUDY
    for node in (review.ct, review.heatmap, review.segmentation, review.emboli_table, review.slice_chart):
        assert shn.GetItemParent(shn.GetItemByDataNode(node)) == review.study_item, node.GetName()


def test_nodes_go_under_the_study_the_ct_already_has(a_scene: SlicerLogics, an_analysis_folder: AnalysisFolder) -> None:
    ct = a_scene.volumes.AddArchetypeVolume(str(an_analysis_folder.ct_path), "CT from DICOM", 0,
                                            vtk.vtkStringArray())
    shn = a_scene.scene.GetSubjectHierarchyNode()
    patient = shn.CreateSubjectItem(shn.GetSceneItemID(), "Patient 1")
    study = shn.CreateStudyItem(patient, "CTPA 2026")
    shn.CreateItem(study, ct)
    review = load_analysis(a_scene, an_analysis_folder.folder, ct_node=ct)
    assert review.ct is ct
    assert review.study_item == study
    assert shn.GetItemParent(shn.GetItemByDataNode(review.segmentation)) == study
    assert a_scene.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 2  # the CT and the heatmap


def test_folder_without_a_segmenter_mask_has_no_segmenter_segment(a_scene: SlicerLogics, tmp_path: Path) -> None:
    folder = write_analysis_folder(tmp_path, oblique_geometry(), with_segmentation=False)
    review = load_analysis(a_scene, folder.folder, ct_path=folder.ct_path)
    assert set(review.segment_ids) == {PE_PSEUDOMASK.name, PULMONARY_ARTERIES.name}
    assert review.segmentation.GetSegmentation().GetSegment(PE_SEGMENTER.segment_id) is None


def test_a_copied_pseudomask_gives_no_segmenter_segment(a_scene: SlicerLogics,
                                                        an_analysis_folder: AnalysisFolder) -> None:
    path = an_analysis_folder.folder / "result.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps(record | {"segmentation_source": "copy of the pseudo-mask (no segmenter model)"}))
    review = load_analysis(a_scene, an_analysis_folder.folder)
    assert set(review.segment_ids) == {PE_PSEUDOMASK.name, PULMONARY_ARTERIES.name}
    path.write_text(json.dumps(record | {"segmentation_source": "segmenter"}))
    assert PE_SEGMENTER.name in load_analysis(a_scene, an_analysis_folder.folder).segment_ids


def test_mask_off_the_cts_grid_is_refused_with_its_file(a_scene: SlicerLogics, an_analysis_folder: AnalysisFolder) -> None:
    g = an_analysis_folder.ct.geometry
    shifted = Geometry(g.size, g.spacing_mm, (g.origin_mm[0] + 0.5, *g.origin_mm[1:]), g.direction)
    write_volume(an_analysis_folder.arteries, an_analysis_folder.folder / "arteries.nii.gz", shifted)
    nodes_before = a_scene.scene.GetNumberOfNodes()
    with pytest.raises(InputError, match=r"arteries\.nii\.gz: not on the CT's grid"):
        load_analysis(a_scene, an_analysis_folder.folder)
    assert a_scene.scene.GetNumberOfNodes() == nodes_before  # the CT it loaded is gone again


def test_wrong_number_of_slice_probabilities_is_refused(a_scene: SlicerLogics, an_analysis_folder: AnalysisFolder) -> None:
    path = an_analysis_folder.folder / "result.json"
    record = json.loads(path.read_text())
    record["slice_probabilities"] = record["slice_probabilities"][:-1]
    path.write_text(json.dumps(record))
    n = an_analysis_folder.ct.geometry.size[2]
    with pytest.raises(ValueError, match=f"{n - 1} slice probabilities for a volume of {n} slices"):
        load_analysis(a_scene, an_analysis_folder.folder)
    assert a_scene.scene.GetNumberOfNodesByClass("vtkMRMLVolumeNode") == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.update(pe_probability=1.5), r"pe_probability must be a number in \[0, 1\], got 1.5"),
        (lambda r: r.pop("emboli"), "missing keys: emboli"),
        (lambda r: r["slice_probabilities"].__setitem__(3, -0.1), r"slice_probabilities\[3\] must be"),
        (lambda r: r["emboli"][0].pop("centroid_lps_mm"), "embolus 0 lacks centroid_lps_mm"),
    ],
)
def test_bad_result_json_is_refused(an_analysis_folder: AnalysisFolder, change, message: str) -> None:
    path = an_analysis_folder.folder / "result.json"
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))
    with pytest.raises(InputError, match=message):
        read_analysis_record(an_analysis_folder.folder)


def test_incomplete_folder_names_the_missing_file(an_analysis_folder: AnalysisFolder) -> None:
    (an_analysis_folder.folder / "heatmap.nii.gz").unlink()
    with pytest.raises(InputError, match=r"heatmap\.nii\.gz is missing"):
        read_analysis_record(an_analysis_folder.folder)
    shutil.rmtree(an_analysis_folder.folder)
    with pytest.raises(InputError, match="analysis folder not found"):
        read_analysis_record(an_analysis_folder.folder)


def test_ct_geometry_round_trips_through_the_node(a_scene: SlicerLogics, an_analysis_folder: AnalysisFolder) -> None:
    review = load_analysis(a_scene, an_analysis_folder.folder, focus=False)
    assert geometry_of(review.ct).same_grid(an_analysis_folder.ct.geometry, tol=NIFTI_TOLERANCE_MM)


def test_a_dicom_series_input_lands_on_its_own_grid(a_scene: SlicerLogics, an_analysis_folder: AnalysisFolder,
                                                    tmp_path: Path) -> None:
    """A DICOM folder goes through the core's loader; masks written on its grid line up voxel for voxel."""
    write_dicom_series(an_analysis_folder.ct, tmp_path / "dicom")
    expected = load_ct(tmp_path / "dicom")
    ct = load_ct_node(a_scene, tmp_path / "dicom")
    assert ct.GetName() == "dicom"
    np.testing.assert_array_equal(volume_array(ct), expected.hu)
    assert geometry_of(ct).same_grid(expected.geometry, tol=1e-9)
    review = load_analysis(a_scene, an_analysis_folder.folder, ct_node=ct)
    np.testing.assert_array_equal(corrected_mask(review.segmentation, PE_PSEUDOMASK.segment_id, ct),
                                  an_analysis_folder.pseudomask.astype(bool))


@pytest.mark.realdata
def test_real_cta_and_its_artery_mask_enter_the_scene_exactly(a_scene: SlicerLogics, real_cta_dir: Path) -> None:
    """The real chest CTA crop through Slicer's Volumes logic agrees with the core loader voxel for voxel."""
    expected = load_ct(real_cta_dir / "cta_crop.nii.gz")
    arteries, grid = read_label_file(real_cta_dir / "pulmonary_artery.nii.gz")
    ct = load_ct_node(a_scene, real_cta_dir / "cta_crop.nii.gz")
    np.testing.assert_array_equal(volume_array(ct), expected.hu)
    assert geometry_of(ct).same_grid(expected.geometry, tol=NIFTI_TOLERANCE_MM)
    node = add_segmentation(a_scene.scene, ct, {PULMONARY_ARTERIES: arteries}, "real")
    np.testing.assert_array_equal(corrected_mask(node, PULMONARY_ARTERIES.segment_id, ct), arteries > 0)


def test_segments_get_closed_surfaces_for_the_3d_views(a_scene: SlicerLogics, an_analysis_folder: AnalysisFolder) -> None:
    """Each segment's surface lies over its voxels (RAS); the arteries are see-through, the emboli opaque."""
    review = load_analysis(a_scene, an_analysis_folder.folder)
    segmentation, display = review.segmentation.GetSegmentation(), review.segmentation.GetDisplayNode()
    assert segmentation.ContainsRepresentation("Closed surface")
    assert segmentation.GetSourceRepresentationName() == "Binary labelmap", "edits still change the voxels"
    m = ijk_to_ras(review.ct)
    half_voxel = 0.5 * np.abs(m[:3, :3]).sum(axis=1)
    for spec, mask in ((PE_PSEUDOMASK, an_analysis_folder.pseudomask), (PULMONARY_ARTERIES, an_analysis_folder.arteries)):
        surface = segmentation.GetSegment(spec.segment_id).GetRepresentation("Closed surface")
        assert surface.GetNumberOfPolys() > 0, spec.name
        kji = np.argwhere(mask > 0)
        ras = kji[:, ::-1] @ m[:3, :3].T + m[:3, 3]
        bounds = np.array(surface.GetBounds()).reshape(3, 2)
        np.testing.assert_array_less(ras.min(axis=0) - half_voxel - 1e-3, bounds[:, 0] + 1e-9, err_msg=spec.name)
        np.testing.assert_array_less(bounds[:, 1], ras.max(axis=0) + half_voxel + 1e-3, err_msg=spec.name)
        assert display.GetSegmentOpacity3D(spec.segment_id) == pytest.approx(spec.opacity_3d)
    assert PULMONARY_ARTERIES.opacity_3d < PE_PSEUDOMASK.opacity_3d == 1.0


def test_surfaces_can_be_left_out(a_scene: SlicerLogics, an_analysis_folder: AnalysisFolder) -> None:
    review = load_analysis(a_scene, an_analysis_folder.folder, surfaces=False)
    assert not review.segmentation.GetSegmentation().ContainsRepresentation("Closed surface")
