"""Segments from numpy masks and back, exact on oblique anisotropic grids, through edits as the Segment Editor
makes them (sub-extent modifier labelmaps, paint, erase), and through a ``.seg.nrrd`` file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mrml_helpers import oblique_geometry

from PELabelUpLib.geometry import Geometry
from PELabelUpLib.mrml import (
    PE_PSEUDOMASK,
    PULMONARY_ARTERIES,
    SlicerLogics,
    add_segmentation,
    corrected_mask,
    create_headless_scene,
    set_segment_mask,
)
from PELabelUpLib.mrml.grid import (
    add_volume_from_array,
    add_volume_on_grid,
    ijk_to_ras,
    image_from_array,
    numpy_to_matrix,
    voxels,
)

slicer = pytest.importorskip("slicer")
vtk = pytest.importorskip("vtk")


def _volume(logics: SlicerLogics, geometry: Geometry) -> slicer.vtkMRMLScalarVolumeNode:
    """A CT-like volume node on ``geometry``."""
    return add_volume_on_grid(logics.scene, np.zeros(geometry.shape_zyx, np.int16), geometry, "CT")


@st.composite
def grids_and_masks(draw: st.DrawFn) -> tuple[Geometry, np.ndarray, np.ndarray]:
    size = tuple(draw(st.integers(3, 12)) for _ in range(3))
    spacing = tuple(draw(st.floats(0.3, 4.0)) for _ in range(3))
    angles = tuple(draw(st.floats(-40.0, 40.0)) for _ in range(3))
    geometry = oblique_geometry(size=size, spacing_mm=spacing, angles_deg=angles)  # type: ignore[arg-type]
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    first = rng.random(geometry.shape_zyx) < draw(st.floats(0.0, 0.6))
    second = rng.random(geometry.shape_zyx) < 0.3  # overlaps the first: they cannot share one layer
    return geometry, first, second


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(grids_and_masks())
def test_masks_round_trip_exactly_on_any_grid(case: tuple[Geometry, np.ndarray, np.ndarray]) -> None:
    geometry, first, second = case
    logics = create_headless_scene(slice_views=())
    volume = _volume(logics, geometry)
    node = add_segmentation(logics.scene, volume, {PE_PSEUDOMASK: first, PULMONARY_ARTERIES: second}, "seg")
    np.testing.assert_array_equal(corrected_mask(node, PE_PSEUDOMASK.segment_id, volume), first)
    np.testing.assert_array_equal(corrected_mask(node, PULMONARY_ARTERIES.segment_id, volume), second)


@pytest.fixture
def a_segmentation(a_scene: SlicerLogics) -> tuple[slicer.vtkMRMLSegmentationNode, slicer.vtkMRMLVolumeNode,
                                                     np.ndarray, np.ndarray]:
    """Two overlapping segments on an oblique, anisotropic volume, with the masks they were made from."""
    geometry = oblique_geometry(size=(20, 16, 10))
    volume = _volume(a_scene, geometry)
    rng = np.random.default_rng(5)
    pseudo = rng.random(geometry.shape_zyx) < 0.2
    arteries = pseudo | (rng.random(geometry.shape_zyx) < 0.2)
    node = add_segmentation(a_scene.scene, volume, {PULMONARY_ARTERIES: arteries, PE_PSEUDOMASK: pseudo}, "seg")
    return node, volume, pseudo, arteries


def test_paint_and_erase_reach_the_mask_and_spare_the_other_segment(a_segmentation) -> None:
    node, volume, pseudo, arteries = a_segmentation
    paint = np.zeros_like(pseudo)
    paint[2:5, 3:9, 4:12] = True
    erase = np.zeros_like(pseudo)
    erase[6:9, :, 10:] = True
    set_segment_mask(node, PE_PSEUDOMASK.segment_id, paint, volume, mode="paint")
    set_segment_mask(node, PE_PSEUDOMASK.segment_id, erase, volume, mode="erase")
    np.testing.assert_array_equal(corrected_mask(node, PE_PSEUDOMASK.segment_id, volume), (pseudo | paint) & ~erase)
    np.testing.assert_array_equal(corrected_mask(node, PULMONARY_ARTERIES.segment_id, volume), arteries)


def test_a_brush_stroke_on_a_sub_extent_reaches_the_mask(a_segmentation) -> None:
    """The Segment Editor hands the logic a modifier labelmap covering only the stroke's extent."""
    node, volume, pseudo, _ = a_segmentation
    stroke = slicer.vtkOrientedImageData()
    stroke.SetExtent(3, 7, 2, 5, 4, 6)  # (i, j, k) index ranges, inclusive
    stroke.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    stroke.SetImageToWorldMatrix(numpy_to_matrix(ijk_to_ras(volume)))
    voxels(stroke)[...] = 1
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    assert logic.SetBinaryLabelmapToSegment(stroke, node, PE_PSEUDOMASK.segment_id, logic.MODE_MERGE_MAX,
                                            stroke.GetExtent())
    expected = pseudo.copy()
    expected[4:7, 2:6, 3:8] = True  # (Z, Y, X) = k, j, i
    np.testing.assert_array_equal(corrected_mask(node, PE_PSEUDOMASK.segment_id, volume), expected)


def test_a_segment_read_on_another_grid_is_resampled_by_nearest_neighbour(a_segmentation, a_scene) -> None:
    node, volume, pseudo, _ = a_segmentation
    doubled = volume_from_ijk(a_scene, ijk_to_ras(volume) @ np.diag([0.5, 0.5, 0.5, 1.0]),
                              tuple(2 * n for n in pseudo.shape))
    got = corrected_mask(node, PE_PSEUDOMASK.segment_id, doubled)
    np.testing.assert_array_equal(got[::2, ::2, ::2], pseudo)  # voxel centres that coincide


def volume_from_ijk(logics: SlicerLogics, matrix: np.ndarray, shape_zyx: tuple[int, ...]) -> slicer.vtkMRMLVolumeNode:
    node = logics.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "other grid")
    node.SetIJKToRASMatrix(numpy_to_matrix(matrix))
    node.SetAndObserveImageData(image_from_array(np.zeros(shape_zyx, np.int16)))
    return node


def test_segments_survive_a_seg_nrrd_file_with_names_and_terminology(a_segmentation, a_scene, tmp_path: Path) -> None:
    node, volume, pseudo, arteries = a_segmentation
    storage = slicer.vtkMRMLSegmentationStorageNode()
    a_scene.scene.AddNode(storage)
    storage.SetFileName(str(tmp_path / "review.seg.nrrd"))
    assert storage.WriteData(node)
    read = a_scene.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "read back")
    assert storage.ReadData(read)
    segment = read.GetSegmentation().GetSegment(PE_PSEUDOMASK.segment_id)
    assert segment.GetName() == PE_PSEUDOMASK.name
    assert segment.GetTerminology() == PE_PSEUDOMASK.terminology
    np.testing.assert_array_equal(corrected_mask(read, PE_PSEUDOMASK.segment_id, volume), pseudo)
    np.testing.assert_array_equal(corrected_mask(read, PULMONARY_ARTERIES.segment_id, volume), arteries)


def test_an_emptied_segment_reads_as_all_false(a_segmentation) -> None:
    node, volume, pseudo, _ = a_segmentation
    set_segment_mask(node, PE_PSEUDOMASK.segment_id, pseudo, volume, mode="erase")
    got = corrected_mask(node, PE_PSEUDOMASK.segment_id, volume)
    assert got.shape == pseudo.shape
    assert not got.any()


def test_bad_requests_are_refused(a_segmentation, a_scene) -> None:
    node, volume, pseudo, _ = a_segmentation
    with pytest.raises(ValueError, match=r"mask shape \(3, 3, 3\) does not match"):
        set_segment_mask(node, PE_PSEUDOMASK.segment_id, np.zeros((3, 3, 3), bool), volume)
    with pytest.raises(ValueError, match="segment 'nope' not in segmentation 'seg'"):
        corrected_mask(node, "nope", volume)
    with pytest.raises(ValueError, match="mode must be"):
        set_segment_mask(node, PE_PSEUDOMASK.segment_id, pseudo, volume, mode="smudge")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="float32"):
        set_segment_mask(node, PE_PSEUDOMASK.segment_id, pseudo.astype(np.float32), volume)
    with pytest.raises(ValueError, match="does not match the grid"):
        add_volume_from_array(a_scene.scene, np.zeros((2, 2, 2)), volume, "small")


def test_disjoint_segments_share_a_layer_and_still_read_back_apart(a_scene: SlicerLogics) -> None:
    geometry = oblique_geometry(size=(12, 10, 6))
    volume = _volume(a_scene, geometry)
    left = np.zeros(geometry.shape_zyx, bool)
    left[:, :, :5] = True
    right = np.zeros_like(left)
    right[1:4, 2:8, 7:] = True
    node = add_segmentation(a_scene.scene, volume, {PE_PSEUDOMASK: left, PULMONARY_ARTERIES: right}, "seg")
    assert node.GetSegmentation().GetNumberOfLayers() == 1  # one image, two label values
    np.testing.assert_array_equal(corrected_mask(node, PE_PSEUDOMASK.segment_id, volume), left)
    np.testing.assert_array_equal(corrected_mask(node, PULMONARY_ARTERIES.segment_id, volume), right)
