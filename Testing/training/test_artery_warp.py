"""Spatial augmentation of artery patches: random rotation and scaling (training.artery.warp)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from PELabelUpLib.geometry import Geometry
from PELabelUpLib.models.artery import ArteryPreprocessing
from training.artery.augment import AUGMENTATIONS, Augmentation
from training.artery.data import AIR_HU, ArteryPatchDataset, WorkingCase, sample_patch
from training.artery.warp import _rotation, random_affine, source_size, warp_patch


def a_ball(shape: tuple[int, int, int], centre: tuple[float, float, float], radius: float) -> np.ndarray:
    zz, yy, xx = np.indices(shape)
    return ((zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= radius ** 2).astype(np.uint8)


def test_the_identity_returns_the_centre_of_the_crop() -> None:
    source = np.random.default_rng(0).normal(size=(21, 23, 25)).astype(np.float32)
    size = source_size(np.eye(3), (15, 15, 15))
    assert size == (17, 17, 17)  # one voxel to spare each way
    out = warp_patch(source, np.eye(3), (15, 15, 15), order=1, fill=-1.0)
    np.testing.assert_allclose(out, source[3:18, 4:19, 5:20], atol=1e-6)


def test_a_quarter_turn_about_z_moves_a_marker_where_the_geometry_says() -> None:
    source = np.zeros((11, 11, 11), dtype=np.float32)
    source[5, 5, 8] = 1.0  # three voxels along +X from the centre
    out = warp_patch(source, _rotation(0, 90.0), (11, 11, 11), order=1, fill=0.0)
    # output offset o reads source offset R o: the marker appears where R o = (0, 0, 3), o = R^T (0, 0, 3)
    expected = np.round(_rotation(0, 90.0).T @ np.array([0.0, 0.0, 3.0])).astype(int) + 5
    assert tuple(np.argwhere(out > 0.5)[0]) == tuple(expected)
    assert out.sum() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("zoom", [0.8, 1.25])
def test_a_zoom_changes_a_ball_s_radius_by_the_zoom(zoom: float) -> None:
    radius = 6.0
    source = a_ball((41, 41, 41), (20, 20, 20), radius)
    matrix = np.diag([1.0 / zoom] * 3)
    out = warp_patch(source, matrix, (31, 31, 31), order=1, fill=0.0) >= 0.5
    measured = (3 * out.sum() / (4 * np.pi)) ** (1 / 3)
    assert measured == pytest.approx(radius * zoom, rel=0.06)


def test_random_affines_stay_within_their_ranges_and_the_crop_covers_every_read() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        m = random_affine(rng, rotate_deg=(15.0, 10.0, 10.0), scale=(0.8, 1.25), stretch=0.1)
        zooms = 1.0 / np.linalg.svd(m, compute_uv=False)
        assert np.all(zooms >= 0.8 * 0.9 - 1e-9) and np.all(zooms <= 1.25 * 1.1 + 1e-9)
        crop = source_size(m, (32, 32, 32))
        out = warp_patch(np.ones(crop, dtype=np.float32), m, (32, 32, 32), order=1, fill=0.0)
        assert out.min() == pytest.approx(1.0)  # never read outside the crop
    none = random_affine(rng, rotate_deg=(0.0, 0.0, 0.0), scale=(1.0, 1.0), stretch=0.0)
    np.testing.assert_allclose(none, np.eye(3))


def a_tube_case() -> WorkingCase:
    """A straight artery along Y through a 60^3 working grid, lumen 400 HU in 40 HU tissue."""
    arteries = np.zeros((60, 60, 60), dtype=np.uint8)
    arteries[27:34, :, 27:34] = 1
    hu = np.where(arteries > 0, 400, 40).astype(np.int16)
    geometry = Geometry(size=(60, 60, 60), spacing_mm=(1.5, 1.5, 1.5), origin_mm=(0.0, 0.0, 0.0))
    return WorkingCase("tube", hu, arteries, geometry, np.flatnonzero(arteries))


def test_warped_patches_keep_image_and_label_together_and_show_turned_tubes() -> None:
    case = a_tube_case()
    rng = np.random.default_rng(5)
    angles = []
    for _ in range(20):
        m = random_affine(rng, rotate_deg=(30.0, 0.0, 0.0), scale=(0.8, 1.25), stretch=0.0)
        hu, label = sample_patch(case, (24, 24, 24), rng, on_artery=True, matrix=m)
        assert hu.shape == label.shape == (24, 24, 24) and hu.dtype == np.float32 and label.dtype == np.uint8
        assert label.sum() > 0 and set(np.unique(label)) <= {0, 1}
        # the label is the image's lumen, within the one-voxel partial-volume rim
        lumen = hu >= 220
        assert (lumen & (label > 0)).sum() >= 0.9 * min(lumen.sum(), label.sum())
        # the tube's axis in the patch: the label's main inertia direction, in the Y-X plane
        coords = np.argwhere(label > 0).astype(float)
        coords -= coords.mean(0)
        axis = np.linalg.eigh(coords.T @ coords)[1][:, -1]
        angles.append(np.degrees(np.arctan2(abs(axis[2]), abs(axis[1]))))
    assert max(angles) > 10.0  # turned away from Y
    assert min(angles) < 30.0 + 3.0


def test_the_spatial_preset_warps_most_patches_and_stays_deterministic_per_seed() -> None:
    prep = ArteryPreprocessing()
    quiet = Augmentation(flip_x_p=0.0, hu_scale=(1.0, 1.0), hu_shift=(0.0, 0.0), noise_hu=(0.0, 0.0),
                         spatial_p=AUGMENTATIONS["spatial"].spatial_p)
    dataset = ArteryPatchDataset([a_tube_case()], prep, patches_per_epoch=30, patch_zyx=(24, 24, 24),
                                 artery_fraction=1.0, augmentation=quiet)
    torch.manual_seed(0)
    first = [dataset[i] for i in range(len(dataset))]
    torch.manual_seed(0)
    again = [dataset[i] for i in range(len(dataset))]
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    # an unwarped patch of the tube holds only its two HU values (and air); a warped one has interpolated rims
    warped = sum(len(np.unique(item["image"].numpy())) > 3 for item in first)
    assert 0.4 * len(first) <= warped <= 0.95 * len(first)


def test_air_fills_what_the_volume_does_not_hold() -> None:
    case = a_tube_case()
    m = np.diag([1 / 0.8] * 3)  # zoomed out: the crop reaches past the volume's edge
    rng = np.random.default_rng(1)
    hu, _ = sample_patch(case, (60, 60, 60), rng, on_artery=False, matrix=m)
    assert hu.min() == pytest.approx(AIR_HU)
    assert ndimage.label(hu > AIR_HU + 1)[1] == 1
