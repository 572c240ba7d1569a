"""Where the slice views look: slice positions along k, jumps from the slice plot, centring on an embolus."""

from __future__ import annotations

import numpy as np
import pytest
from mrml_helpers import AnalysisFolder

from PELabelUpLib.mrml import (
    SlicerLogics,
    center_views_on,
    embolus_ras,
    jump_slices_to,
    jump_to_slice,
    load_analysis,
    slice_position_ras,
)
from PELabelUpLib.mrml.grid import LPS_TO_RAS
from PELabelUpLib.mrml.views import slice_nodes, slice_plane, slice_positions_mm

slicer = pytest.importorskip("slicer")


@pytest.fixture
def a_review(a_scene: SlicerLogics, an_analysis_folder: AnalysisFolder):
    return load_analysis(a_scene, an_analysis_folder.folder)


def test_slice_position_is_the_slice_centre_in_ras(a_review, an_analysis_folder: AnalysisFolder) -> None:
    g = an_analysis_folder.ct.geometry
    for k in (0, 7, g.size[2] - 1):
        centre_lps = g.index_to_world(np.array([(g.size[0] - 1) / 2, (g.size[1] - 1) / 2, k]))
        np.testing.assert_allclose(slice_position_ras(a_review.ct, k), LPS_TO_RAS @ centre_lps, atol=1e-3)
    with pytest.raises(ValueError, match=f"slice index {g.size[2]} outside 0..{g.size[2] - 1}"):
        slice_position_ras(a_review.ct, g.size[2])


def test_plot_positions_step_by_the_slice_spacing_along_k(a_review, an_analysis_folder: AnalysisFolder) -> None:
    g = an_analysis_folder.ct.geometry
    positions = slice_positions_mm(a_review.ct)
    assert positions.shape == (g.size[2],)
    np.testing.assert_allclose(np.diff(positions), g.spacing_mm[2], atol=1e-4)
    table = a_review.slice_table.GetTable()
    np.testing.assert_allclose([table.GetValueByName(k, "Position (mm)").ToDouble() for k in range(g.size[2])],
                               positions)


def test_centred_jump_puts_the_point_in_the_middle_of_every_view(a_scene: SlicerLogics, a_review) -> None:
    target = slice_position_ras(a_review.ct, 4) + np.array([3.0, -2.0, 1.0])
    jump_slices_to(a_scene.scene, target, centered=True)
    nodes = slice_nodes(a_scene.scene)
    assert [n.GetLayoutName() for n in nodes] == ["Green", "Red", "Yellow"]
    for node in nodes:
        centre, _ = slice_plane(node)
        np.testing.assert_allclose(centre, target, atol=1e-6)


def test_jump_to_a_picked_slice_moves_the_axial_plane_onto_it(a_scene: SlicerLogics, a_review) -> None:
    red = a_scene.slice_logics["Red"].GetSliceNode()
    before, _ = slice_plane(red)
    for k in (2, 11):
        ras = jump_to_slice(a_scene.scene, a_review.ct, k)
        centre, normal = slice_plane(red)
        assert abs(np.dot(ras - centre, normal)) < 1e-6  # the plane passes through slice k's centre
    assert not np.allclose(slice_plane(red)[0], before)


def test_emboli_rows_centre_the_views_on_their_embolus(a_scene: SlicerLogics, a_review,
                                                       an_analysis_folder: AnalysisFolder) -> None:
    table = a_review.emboli_table
    emboli = sorted(an_analysis_folder.record["emboli"], key=lambda e: -e["volume_mm3"])
    assert table.GetTable().GetNumberOfRows() == len(emboli) == 2
    for row, embolus in enumerate(emboli):
        expected = LPS_TO_RAS @ np.asarray(embolus["centroid_lps_mm"])
        np.testing.assert_allclose(embolus_ras(table, row), expected, atol=1e-9)
        ras = center_views_on(a_scene.scene, table, row)
        for node in slice_nodes(a_scene.scene):
            np.testing.assert_allclose(slice_plane(node)[0], ras, atol=1e-6)
    with pytest.raises(ValueError, match="row 2 outside 0..1"):
        embolus_ras(table, 2)


def test_loading_focuses_the_views_on_the_largest_embolus(a_scene: SlicerLogics, a_review) -> None:
    for node in slice_nodes(a_scene.scene):
        np.testing.assert_allclose(slice_plane(node)[0], embolus_ras(a_review.emboli_table, 0), atol=1e-6)


def test_jump_refuses_a_non_finite_point(a_scene: SlicerLogics) -> None:
    with pytest.raises(ValueError, match="must be finite"):
        jump_slices_to(a_scene.scene, (0.0, float("nan"), 1.0))
