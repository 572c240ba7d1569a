"""Headless pictures from the real scene: heatmap controls change them, segments show as outlines, the axial
view follows the radiological convention, and the scene is left as it was."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from mrml_helpers import AnalysisFolder

from PELabelUpLib.geometry import Geometry
from PELabelUpLib.mrml import (
    PE_PSEUDOMASK,
    SlicerLogics,
    load_analysis,
    set_heatmap_opacity,
    set_heatmap_threshold,
    set_heatmap_window,
    show_layers,
)
from PELabelUpLib.mrml.grid import add_volume_on_grid
from PELabelUpLib.mrml.render import over_black, render_png, render_views, write_png
from PELabelUpLib.mrml.views import fit_views

slicer = pytest.importorskip("slicer")


def coloured(picture: np.ndarray) -> np.ndarray:
    """Pixels that are not grey (the CT is grey; heat and outlines are coloured)."""
    rgb = picture[..., :3].astype(int)
    return (rgb.max(axis=2) - rgb.min(axis=2)) > 12


@pytest.fixture
def a_review(a_scene: SlicerLogics, an_analysis_folder: AnalysisFolder):
    return load_analysis(a_scene, an_analysis_folder.folder, heat_threshold=0.2, heat_opacity=1.0)


def test_heatmap_opacity_and_threshold_change_the_picture(a_scene: SlicerLogics, a_review) -> None:
    heat_on = render_views(a_scene, ["Red"])["Red"]
    set_heatmap_threshold(a_review.heatmap, 0.95)
    hottest_only = render_views(a_scene, ["Red"])["Red"]
    set_heatmap_threshold(a_review.heatmap, 0.2)
    set_heatmap_opacity(a_scene.scene, 0.0)
    heat_off = render_views(a_scene, ["Red"])["Red"]
    assert coloured(heat_on).sum() > 20  # the view is centred on the largest clot, where heat is high
    assert 0 < coloured(hottest_only).sum() < coloured(heat_on).sum()
    assert coloured(heat_off).sum() == 0
    for composite in (logic.GetSliceCompositeNode() for logic in a_scene.slice_logics.values()):
        assert composite.GetForegroundOpacity() == 0.0


def test_heatmap_window_maps_onto_the_colour_table(a_scene: SlicerLogics, a_review) -> None:
    set_heatmap_window(a_review.heatmap, 0.0, 0.5)
    display = a_review.heatmap.GetDisplayNode()
    assert (display.GetWindow(), display.GetLevel()) == pytest.approx((0.5, 0.25))
    with pytest.raises(ValueError, match="0.6, 0.4"):
        set_heatmap_window(a_review.heatmap, 0.6, 0.4)
    with pytest.raises(ValueError, match="1.5"):
        set_heatmap_opacity(a_scene.scene, 1.5)
    with pytest.raises(ValueError, match="-0.1"):
        set_heatmap_threshold(a_review.heatmap, -0.1)


def test_segments_show_as_outlines_and_the_scene_is_restored(a_scene: SlicerLogics, a_review) -> None:
    set_heatmap_opacity(a_scene.scene, 0.0)
    nodes_before = a_scene.scene.GetNumberOfNodes()
    pictures = render_views(a_scene, ["Red", "Green"], segmentation_node=a_review.segmentation,
                            reference_volume=a_review.ct, segment_ids=[PE_PSEUDOMASK.segment_id])
    cyan = np.round(np.array(PE_PSEUDOMASK.color) * 255).astype(int)

    for name, picture in pictures.items():
        outline = np.all(np.abs(picture[..., :3].astype(int) - cyan) <= 2, axis=2)
        assert 0 < outline.sum() < 0.2 * outline.size, name  # an outline, not a fill
    assert a_scene.scene.GetNumberOfNodes() == nodes_before
    for logic in a_scene.slice_logics.values():
        assert logic.GetSliceCompositeNode().GetLabelVolumeID() is None
        assert not logic.GetSliceNode().GetUseLabelOutline()


def test_png_holds_the_views_side_by_side(a_scene: SlicerLogics, a_review, tmp_path: Path) -> None:
    path = render_png(a_scene, tmp_path / "views.png", segmentation_node=a_review.segmentation,
                      reference_volume=a_review.ct, gap_px=4)
    written = matplotlib.image.imread(path)
    assert written.shape == (96, 3 * 96 + 2 * 4, 4)
    red = over_black(render_views(a_scene, ["Red"], segmentation_node=a_review.segmentation,
                                  reference_volume=a_review.ct)["Red"])
    np.testing.assert_array_equal(np.round(written[:, :96] * 255).astype(np.uint8), red)
    assert np.all(written[:, 96:100, :3] == 0)  # the gap is black


def test_axial_view_shows_the_patients_right_on_the_screens_left(a_scene: SlicerLogics) -> None:
    geometry = Geometry(size=(40, 40, 6), spacing_mm=(1.0, 1.0, 3.0), origin_mm=(-20.0, -20.0, 0.0))
    hu = np.full(geometry.shape_zyx, -1000, np.int16)
    hu[:, 15:25, 2:10] = 1000  # low i = LPS -x = the patient's right
    hu[:, 2:10, 15:25] = 500  # low j = LPS -y = anterior
    ct = add_volume_on_grid(a_scene.scene, hu, geometry, "marker")
    ct.GetDisplayNode().AutoWindowLevelOff()
    ct.GetDisplayNode().SetWindowLevel(2000, 0)
    show_layers(a_scene.scene, ct)
    fit_views(a_scene)
    picture = render_views(a_scene, ["Red"])["Red"][..., 0].astype(int)
    height, width = picture.shape
    bright = np.argwhere(picture > 230)
    assert bright[:, 1].mean() < width / 2  # patient right on screen left
    medium = np.argwhere((picture > 150) & (picture < 230))
    assert medium[:, 0].mean() < height / 2  # anterior up


def test_unknown_view_and_bad_pictures_are_refused(a_scene: SlicerLogics, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no slice view named \['Blue'\]"):
        render_views(a_scene, ["Blue"])
    with pytest.raises(ValueError, match=r"uint8 \(H, W, 3\|4\)"):
        write_png(np.zeros((4, 4), np.uint8), tmp_path / "x.png")
