"""Headless 3-D pictures of a segmentation's closed surfaces: sides, visibility and see-through arteries."""

from __future__ import annotations

import numpy as np
import pytest

from PELabelUpLib.geometry import Geometry
from PELabelUpLib.mrml import PE_PSEUDOMASK, PE_SEGMENTER, PULMONARY_ARTERIES, SlicerLogics, add_segmentation
from PELabelUpLib.mrml.grid import add_volume_on_grid
from PELabelUpLib.mrml.render3d import render_surfaces

GEOMETRY = Geometry(size=(40, 30, 20), spacing_mm=(1.0, 1.0, 1.0), origin_mm=(-20.0, -15.0, 0.0))


@pytest.fixture
def two_blocks(a_scene: SlicerLogics):
    """The pseudo-mask's block on the patient's right (low i: LPS -x), the segmenter's on the left, and a large
    artery segment around both."""
    ct = add_volume_on_grid(a_scene.scene, np.full(GEOMETRY.shape_zyx, -1000, np.int16), GEOMETRY, "ct")
    right, left, around = (np.zeros(GEOMETRY.shape_zyx, bool) for _ in range(3))
    right[6:14, 10:20, 3:11] = True
    left[6:14, 10:20, 29:37] = True
    around[2:18, 5:25, 1:39] = True
    return add_segmentation(a_scene.scene, ct, {PE_PSEUDOMASK: right, PE_SEGMENTER: left, PULMONARY_ARTERIES: around},
                            "blocks", surfaces=True)


def hues(picture: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of the cyan pseudo-mask (blue high) and of the green segmenter (green high, blue low)."""
    rgb = picture[..., :3].astype(int)
    return (rgb[..., 2] > 80) & (rgb[..., 2] > rgb[..., 0] + 40), (rgb[..., 1] > 80) & (rgb[..., 2] < rgb[..., 1] - 60)


def test_the_anterior_view_shows_the_patients_right_on_the_left_through_see_through_arteries(two_blocks) -> None:
    picture = render_surfaces(two_blocks, size_px=(200, 120), view="anterior")
    assert picture.shape == (120, 200, 4)
    cyan, green = hues(picture)
    columns = np.arange(picture.shape[1])
    assert cyan.sum() > 50 and green.sum() > 50, "both emboli show through the arteries at opacity 0.3"
    assert columns[np.any(cyan, axis=0)].mean() < 100 < columns[np.any(green, axis=0)].mean()
    back_cyan, back_green = hues(render_surfaces(two_blocks, size_px=(200, 120), view="posterior"))
    assert columns[np.any(back_cyan, axis=0)].mean() > 100 > columns[np.any(back_green, axis=0)].mean()


def test_hidden_segments_are_not_drawn_and_surfaces_are_required(a_scene: SlicerLogics, two_blocks) -> None:
    display = two_blocks.GetDisplayNode()
    display.SetSegmentVisibility(PE_PSEUDOMASK.segment_id, False)
    cyan, green = hues(render_surfaces(two_blocks, size_px=(200, 120)))
    assert cyan.sum() == 0 and green.sum() > 50
    two_blocks.RemoveClosedSurfaceRepresentation()
    with pytest.raises(ValueError, match="no closed surfaces"):
        render_surfaces(two_blocks)
    with pytest.raises(ValueError, match="unknown view"):
        render_surfaces(two_blocks, view="oblique")
