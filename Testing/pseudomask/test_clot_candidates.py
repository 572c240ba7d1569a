"""Candidate clot voxels (HU rule in the eroded artery territory) and connected components."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from PELabelUpLib.pseudomask import (
    candidate_clot_voxels,
    clot_threshold_hu,
    components,
    erode_territory,
    lumen_median_hu,
)

BOX = (slice(1, 9), slice(4, 20), slice(4, 20))  # (Z, Y, X) artery territory, inside the array
CLOT = (slice(3, 6), slice(10, 14), slice(10, 14))  # 3 x 4 x 4 = 48 voxels of 50 HU, deep inside
BRIGHT_CLOT_EDGE = (6, 12, 8)  # 140 HU: below the 150 HU threshold -> candidate
NOT_CLOT = {(6, 12, 14): 200, (7, 7, 12): -100}  # enhanced blood, fat: never candidates


@pytest.fixture
def a_tube_phantom() -> tuple[np.ndarray, np.ndarray]:
    """(hu, territory) ``(10, 24, 24)``: lung at -800 HU, a box-shaped artery of 300 HU whose wall layer
    reads 60 HU (partial volume that mimics clot), a 50 HU clot, and single voxels of 140, 200, -100 HU."""
    hu = np.full((10, 24, 24), -800, dtype=np.int16)
    territory = np.zeros(hu.shape, dtype=np.uint8)
    territory[BOX] = 1
    hu[BOX] = 60  # every box voxel starts as wall ...
    inner_box = tuple(slice(s.start + 1, s.stop - 1) for s in BOX)
    hu[inner_box] = 300  # ... and the voxels one layer in are contrast
    hu[CLOT] = 50
    hu[BRIGHT_CLOT_EDGE] = 140
    for where, value in NOT_CLOT.items():
        hu[where] = value
    return hu, territory


@pytest.mark.parametrize(
    ("lumen_hu", "expected"), [(550.0, 150.0), (240.0, 150.0), (200.0, 130.0), (100.0, 80.0)]
)
def test_threshold_is_halfway_to_the_lumen_capped_at_150(lumen_hu, expected):
    assert clot_threshold_hu(lumen_hu) == pytest.approx(expected)


def test_candidates_are_the_clot_not_the_wall(a_tube_phantom):
    hu, territory = a_tube_phantom
    expected = np.zeros(hu.shape, dtype=bool)
    expected[CLOT] = True
    expected[BRIGHT_CLOT_EDGE] = True
    found = candidate_clot_voxels(hu, territory, spacing_mm=(0.7, 0.7, 1.25))
    np.testing.assert_array_equal(found, expected)


def test_a_given_eroded_territory_is_used_as_the_erosion_would_make_it(a_tube_phantom):
    hu, territory = a_tube_phantom
    spacing = (0.7, 0.7, 1.25)
    inner = erode_territory(territory, spacing)
    np.testing.assert_array_equal(candidate_clot_voxels(hu, territory, spacing_mm=spacing, inner=inner),
                                  candidate_clot_voxels(hu, territory, spacing_mm=spacing))
    # it is used, not recomputed: without its deep part the clot is no longer found
    shallow = inner.copy()
    shallow[CLOT] = False
    assert not candidate_clot_voxels(hu, territory, spacing_mm=spacing, inner=shallow)[CLOT].any()
    with pytest.raises(ValueError, match="arrays must share"):
        candidate_clot_voxels(hu, territory, spacing_mm=spacing, inner=inner[:-1])


def test_without_erosion_the_partial_volume_wall_becomes_candidate(a_tube_phantom):
    hu, territory = a_tube_phantom
    found = candidate_clot_voxels(hu, territory, spacing_mm=(0.7, 0.7, 1.25), erosion_mm=0.0)
    wall = territory.astype(bool) & (hu == 60)
    assert wall.sum() > 0
    assert found[wall].all()
    assert found.sum() == wall.sum() + 48 + 1


def test_wall_far_from_contrast_adds_an_occluded_thin_branch(a_tube_phantom):
    """A one-voxel branch filled with clot is all wall (erosion removes it); with ``wall_clear_mm`` its voxels
    farther than that from opacified lumen become candidates, while the partial-volume wall of the opacified
    box stays out (its voxels lie 0.7-1.6 mm from contrast)."""
    box_hu, box_territory = a_tube_phantom
    hu = np.full((10, 24, 40), -800, dtype=np.int16)
    territory = np.zeros(hu.shape, dtype=np.uint8)
    hu[:, :, :24], territory[:, :, :24] = box_hu, box_territory
    branch = (5, 12, slice(20, 36))  # leaves the box's wall (x = 19) along x
    hu[branch], territory[branch] = 50, 1
    spacing = (0.7, 0.7, 1.25)  # x, y, z: the nearest contrast of a branch voxel is (x - 18) * 0.7 mm away
    expected = np.zeros(hu.shape, dtype=bool)
    expected[CLOT] = True
    expected[BRIGHT_CLOT_EDGE] = True
    expected[5, 12, 19] = True  # the branch makes this wall voxel interior: it survives the erosion (60 HU)
    np.testing.assert_array_equal(candidate_clot_voxels(hu, territory, spacing_mm=spacing), expected)
    expected[5, 12, 21:36] = True  # 2.1 mm and farther
    found = candidate_clot_voxels(hu, territory, spacing_mm=spacing, wall_clear_mm=2.0)
    np.testing.assert_array_equal(found, expected)
    # closer than the box's corners (1.59 mm from contrast): the opacified box's wall corners come in too
    loose = candidate_clot_voxels(hu, territory, spacing_mm=spacing, wall_clear_mm=1.5)
    assert loose[1, 4, 4] and loose[8, 19, 19] and not loose[1, 4, 10]
    with pytest.raises(ValueError, match="wall_clear_mm"):
        candidate_clot_voxels(hu, territory, spacing_mm=spacing, wall_clear_mm=-1.0)


def test_wall_rule_without_any_opacified_voxel_takes_the_whole_wall():
    hu = np.full((6, 12, 12), -800, dtype=np.int16)
    territory = np.zeros(hu.shape, dtype=np.uint8)
    territory[1:5, 4:7, 4:7], hu[1:5, 4:7, 4:7] = 1, 50  # a 3-voxel-wide clot-filled vessel, no contrast at all
    found = candidate_clot_voxels(hu, territory, spacing_mm=(1.0, 1.0, 1.0), clot_high_hu=150.0, wall_clear_mm=3.0)
    np.testing.assert_array_equal(found, territory.astype(bool))
    eroded_only = candidate_clot_voxels(hu, territory, spacing_mm=(1.0, 1.0, 1.0), clot_high_hu=150.0)
    assert eroded_only.sum() == 2  # the core line that survives one layer of erosion (z = 2, 3)


def test_lumen_override_and_explicit_window(a_tube_phantom):
    hu, territory = a_tube_phantom
    poorly_opacified = candidate_clot_voxels(hu, territory, spacing_mm=(1, 1, 1), lumen_hu=100.0)  # < 80 HU
    assert not poorly_opacified[BRIGHT_CLOT_EDGE]
    assert poorly_opacified[CLOT].all()
    wide = candidate_clot_voxels(hu, territory, spacing_mm=(1, 1, 1), clot_high_hu=250.0)
    assert wide[next(iter(NOT_CLOT))]  # the 200 HU voxel
    with pytest.raises(ValueError, match=r"clot HU window is empty: \[-50.0, -60.0\)"):
        candidate_clot_voxels(hu, territory, spacing_mm=(1, 1, 1), clot_high_hu=-60.0)


def test_poor_opacification_is_logged(a_tube_phantom, caplog):
    hu, territory = a_tube_phantom
    with caplog.at_level(logging.WARNING, logger="PELabelUpLib.pseudomask"):
        candidate_clot_voxels(hu, territory, spacing_mm=(1, 1, 1), lumen_hu=120.0)
    assert "lumen median 120 HU" in caplog.text


def test_erosion_in_mm_follows_anisotropic_spacing():
    """Spacing (x, y, z) = (0.5, 0.5, 2.0) mm, erosion 1.0 mm: voxels 0.5 and 1.0 mm from the outside go
    in x and y (two layers); the z faces are 2.0 mm from the outside and stay."""
    territory = np.zeros((7, 12, 12), dtype=bool)
    territory[1:6, 2:10, 2:10] = True
    expected = np.zeros_like(territory)
    expected[1:6, 4:8, 4:8] = True
    np.testing.assert_array_equal(erode_territory(territory, (0.5, 0.5, 2.0), 1.0), expected)
    one_layer = np.zeros_like(territory)
    one_layer[2:5, 3:9, 3:9] = True
    np.testing.assert_array_equal(erode_territory(territory, (0.5, 0.5, 2.0)), one_layer)


def test_array_border_is_not_a_wall():
    territory = np.zeros((5, 6, 6), dtype=bool)
    territory[:, 1:5, 1:5] = True  # touches the first and last slice
    inner = erode_territory(territory, (1.0, 1.0, 1.0))
    assert inner[0, 2:4, 2:4].all()
    assert inner.sum() == 5 * 2 * 2


def test_shapes_must_agree():
    with pytest.raises(ValueError, match="arrays must share one 2-D or 3-D shape"):
        candidate_clot_voxels(np.zeros((4, 5, 6)), np.zeros((4, 5, 7)), spacing_mm=(1, 1, 1))


def test_components_drop_small_ones_by_volume_in_mm3():
    mask = np.zeros((6, 8, 8), dtype=bool)
    mask[1, 1, 1:4] = True  # 3 voxels -> 6 mm3 at (1, 1, 2) mm
    mask[3:5, 4:7, 5] = True  # 6 voxels ...
    mask[4, 6, 6] = True  # ... + 1 face neighbour ...
    mask[5, 7, 7] = True  # ... + 1 corner neighbour of it: 8 voxels -> 16 mm3
    labels = components(mask, (1.0, 1.0, 2.0))
    assert labels.dtype == np.int32
    assert labels.max() == 2
    kept = components(mask, (1.0, 1.0, 2.0), min_volume_mm3=10.0)
    assert kept.max() == 1
    assert (kept == 1).sum() == 8
    assert not kept[1, 1, 1:4].any()
    assert components(mask, (1.0, 1.0, 2.0), connectivity=6).max() == 3  # the corner voxel splits off


def test_components_refuse_negative_volume():
    with pytest.raises(ValueError, match="min_volume_mm3 must be >= 0, got -1"):
        components(np.zeros((3, 3, 3), dtype=bool), (1, 1, 1), -1)


@pytest.mark.realdata
def test_real_cta_negative_case_gives_no_candidate_but_an_implanted_clot_is_found(real_cta_dir):
    ct = sitk.ReadImage(str(real_cta_dir / "cta_crop.nii.gz"))
    hu = sitk.GetArrayFromImage(ct).astype(np.int16)
    territory = sitk.GetArrayFromImage(sitk.ReadImage(str(real_cta_dir / "pulmonary_artery.nii.gz"))) > 0
    spacing = ct.GetSpacing()
    assert lumen_median_hu(hu, territory) > 300  # brightly opacified
    negative = components(candidate_clot_voxels(hu, territory, spacing_mm=spacing), spacing, 10.0)
    assert negative.max() == 0  # no false clot in the real, PE-free arteries
    inner = erode_territory(territory, spacing)
    deepest = np.argmax(ndimage.distance_transform_edt(territory))
    z, y, x = np.unravel_index(deepest, hu.shape)
    zz, yy, xx = np.ogrid[: hu.shape[0], : hu.shape[1], : hu.shape[2]]
    clot = ((zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2 <= 4) & territory  # ~5 mm ball, 45 HU
    hu[clot] = 45
    positive = components(candidate_clot_voxels(hu, territory, spacing_mm=spacing), spacing, 10.0)
    assert positive.max() == 1
    found = positive > 0
    assert found[clot & inner].all()
    assert not found[~clot].any()
