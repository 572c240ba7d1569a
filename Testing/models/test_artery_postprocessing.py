"""Artery territory post-processing: the tree is one connected structure; small detached pieces go."""

from __future__ import annotations

import numpy as np

from PELabelUpLib.geometry import Geometry
from PELabelUpLib.models.artery import (
    ArteryPreprocessing,
    artery_input,
    keep_main_components,
    territory_from_probability,
)
from PELabelUpLib.volume import CTVolume


def test_small_detached_components_are_dropped():
    mask = np.zeros((20, 40, 40), bool)
    mask[2:18, 10:20, 10:20] = True  # the tree: 1600 voxels
    mask[5:9, 30:35, 30:35] = True  # a bright vein: 100 voxels (6 %)
    mask[2:18, 22:25, 2:8] = True  # a detached distal branch: 288 voxels (18 %)
    kept = keep_main_components(mask, 0.1)
    assert kept[10, 15, 15]
    assert kept[10, 23, 5]
    assert not kept[6, 32, 32]
    assert kept.sum() == 1600 + 288
    np.testing.assert_array_equal(keep_main_components(mask, 0.0), mask)
    assert not keep_main_components(np.zeros_like(mask), 0.1).any()


def test_the_setting_travels_in_the_metadata():
    prep = ArteryPreprocessing(min_component_fraction=0.25)
    assert ArteryPreprocessing.from_metadata({"preprocessing": prep.as_metadata()}) == prep
    assert ArteryPreprocessing.from_metadata({"preprocessing": {}}).min_component_fraction == 0.1


def _body_volume() -> CTVolume:
    """A 120 x 100 x 40 grid at 1.5 mm: a 60 x 40 x 40-voxel soft-tissue body in air."""
    hu = np.full((40, 100, 120), -1000, np.int16)
    hu[:, 30:70, 30:90] = 40
    return CTVolume(hu=hu, geometry=Geometry(size=(120, 100, 40), spacing_mm=(1.5, 1.5, 1.5),
                                             origin_mm=(-90.0, -75.0, 0.0)), source="body in air")


def test_the_model_sees_only_the_body_box_unless_told_otherwise():
    volume = _body_volume()
    image, work = artery_input(volume, ArteryPreprocessing())
    nx, ny, nz = work.size
    assert image.shape == (nz, ny, nx)
    assert nz == 40 and ny < 100 and nx < 120  # air cut away in-plane
    assert nx >= 60 + 2 * 6 and ny >= 40 + 2 * 6  # the body plus at least the 10 mm margin
    lo = np.array(work.origin_mm)
    assert np.all(lo[:2] <= np.array(volume.geometry.index_to_world(np.array([[30.0, 30.0, 0.0]]))[0][:2]) - 10.0)
    _, whole = artery_input(volume, ArteryPreprocessing(crop_to_body=False))
    assert whole.size == (120, 100, 40)
    air = CTVolume(hu=np.full((8, 20, 20), -1000, np.int16), source="air",
                   geometry=Geometry(size=(20, 20, 8), spacing_mm=(1.5, 1.5, 1.5), origin_mm=(0.0, 0.0, 0.0)))
    assert artery_input(air, ArteryPreprocessing())[1].size == (20, 20, 8)  # no body: the whole grid


def test_components_are_chosen_on_the_working_grid_and_land_on_the_input_grid():
    volume = _body_volume()
    prep = ArteryPreprocessing(spacing_mm=(3.0, 3.0, 3.0))
    _, work = artery_input(volume, prep)
    prob_work = np.zeros(work.shape_zyx, np.float32)
    prob_work[4:16, 8:14, 8:20] = 0.9  # the tree
    prob_work[4:6, 2:4, 2:4] = 0.8  # a detached bright vein: 8 voxels, under 10 % of the tree
    mask, prob = territory_from_probability(prob_work, work, volume.geometry, prep)
    assert mask.shape == prob.shape == volume.hu.shape and mask.dtype == np.uint8 and prob.dtype == np.float32
    world_tree = work.index_to_world(np.array([[14.0, 11.0, 10.0]]))  # (x, y, z) index of the tree's middle
    i, j, k = np.round(volume.geometry.world_to_index(world_tree)[0]).astype(int)
    assert mask[k, j, i] == 1
    world_vein = work.index_to_world(np.array([[2.5, 2.5, 4.5]]))
    i, j, k = np.round(volume.geometry.world_to_index(world_vein)[0]).astype(int)
    assert mask[k, j, i] == 0 and prob[k, j, i] == 0.0
    # linear resampling puts the 0.5 crossing between the outer voxel centres and the box's faces
    inner_mm3, outer_mm3 = 11 * 5 * 11 * 27.0, 12 * 6 * 12 * 27.0
    assert inner_mm3 < mask.sum() * 1.5**3 < outer_mm3
