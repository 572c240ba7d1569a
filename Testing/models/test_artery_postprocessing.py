"""Artery territory post-processing: the tree is one connected structure; small detached pieces go."""

from __future__ import annotations

import numpy as np

from PELabelUpLib.models.artery import ArteryPreprocessing, keep_main_components


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
