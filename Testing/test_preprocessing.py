"""Tests of PELabelUpLib.preprocessing on real SimpleITK grids, oblique and anisotropic ones included."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from PELabelUpLib.errors import InputError
from PELabelUpLib.geometry import Geometry
from PELabelUpLib.preprocessing import (
    WINDOWS,
    CropBox,
    apply_window,
    crop_to_chest,
    mask_box,
    resample_like,
    resample_to_spacing,
    target_geometry_for_spacing,
    uncrop,
)
from PELabelUpLib.volume import CTVolume


def rotation(axis: str, degrees: float) -> tuple[float, ...]:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    m = {"x": [[1, 0, 0], [0, c, -s], [0, s, c]], "z": [[c, -s, 0], [s, c, 0], [0, 0, 1]]}[axis]
    return tuple(float(v) for v in np.asarray(m).ravel())


OBLIQUE = tuple(float(v) for v in (np.asarray(rotation("z", 25)).reshape(3, 3)
                                   @ np.asarray(rotation("x", -12)).reshape(3, 3)).ravel())

GRIDS = {
    "axial-isotropic": Geometry(size=(40, 36, 30), spacing_mm=(1.0, 1.0, 1.0), origin_mm=(-20.0, -18.0, 5.0)),
    "anisotropic": Geometry(size=(48, 40, 22), spacing_mm=(0.7, 0.8, 2.5), origin_mm=(-16.8, 30.0, -100.0)),
    "oblique-anisotropic": Geometry(size=(44, 38, 24), spacing_mm=(0.75, 0.9, 2.0),
                                    origin_mm=(12.5, -40.0, 210.0), direction=OBLIQUE),
    "flipped-oblique": Geometry(size=(36, 42, 20), spacing_mm=(0.9, 0.6, 3.0), origin_mm=(100.0, 80.0, -50.0),
                                direction=tuple(-v for v in rotation("x", 30))),
}


def world_of_voxels(geometry: Geometry) -> np.ndarray:
    """LPS mm of every voxel centre, shape (Z, Y, X, 3)."""
    k, j, i = np.meshgrid(*(np.arange(n) for n in geometry.shape_zyx), indexing="ij")
    return geometry.index_to_world(np.stack([i, j, k], axis=-1))


def blob_labels(geometry: Geometry) -> np.ndarray:
    """uint8 label map (Z, Y, X): two spheres (labels 1, 2) placed in world space."""
    world = world_of_voxels(geometry)
    centre = geometry.index_to_world((np.asarray(geometry.size) - 1) / 2.0)
    extent = min(n * s for n, s in zip(geometry.size, geometry.spacing_mm, strict=True))
    labels = np.zeros(geometry.shape_zyx, dtype=np.uint8)
    for label, offset in ((1, -0.18), (2, 0.18)):
        c = centre + offset * extent * geometry.direction_matrix[:, 0]
        labels[np.linalg.norm(world - c, axis=-1) < 0.22 * extent] = label
    return labels


@pytest.mark.parametrize("name", list(GRIDS))
def test_resample_keeps_origin_direction_and_extent(name: str) -> None:
    grid = GRIDS[name]
    volume = CTVolume(np.zeros(grid.shape_zyx, dtype=np.int16), grid, source=name)
    new_spacing = (1.3, 1.1, 1.7)
    out = resample_to_spacing(volume, new_spacing)
    g = out.geometry
    assert g.origin_mm == grid.origin_mm
    assert g.direction == grid.direction
    assert g.spacing_mm == new_spacing
    extent_in = np.asarray(grid.size) * np.asarray(grid.spacing_mm)
    extent_out = np.asarray(g.size) * np.asarray(g.spacing_mm)
    assert np.all(np.abs(extent_out - extent_in) <= np.asarray(new_spacing) / 2 + 1e-9)
    assert out.hu.shape == g.shape_zyx
    assert out.hu.dtype == np.int16


@pytest.mark.parametrize("name", list(GRIDS))
def test_linear_resample_samples_the_same_world_positions(name: str) -> None:
    """A linear function of LPS position must survive linear resampling wherever both grids overlap."""
    grid = GRIDS[name]
    gradient = np.array([2.0, -1.5, 3.0])  # HU per mm along L, P, S

    def field(world: np.ndarray) -> np.ndarray:
        return world @ gradient

    volume = CTVolume(field(world_of_voxels(grid)).astype(np.float32), grid, source=name)
    out = resample_to_spacing(volume, (1.6, 1.4, 1.9), interpolator="linear", default_hu=-5000)
    expected = field(world_of_voxels(out.geometry))
    inside = out.hu > -4999
    # voxels whose centre lies inside the input grid (up to the half-voxel border) are interpolated
    cont = grid.world_to_index(world_of_voxels(out.geometry))
    interior = np.all((cont >= 0) & (cont <= np.asarray(grid.size) - 1), axis=-1)
    assert interior.sum() > 0.5 * interior.size
    assert np.all(inside[interior])
    np.testing.assert_allclose(out.hu[interior], expected[interior], atol=1e-2 * np.abs(expected).max() + 1e-3)


@pytest.mark.parametrize("name", list(GRIDS))
def test_label_map_round_trip_lands_on_the_original_grid(name: str) -> None:
    grid = GRIDS[name]
    labels = blob_labels(grid)
    coarse = target_geometry_for_spacing(grid, (2.1, 2.3, 3.1))
    on_coarse = resample_like(labels, grid, coarse, "nearest")
    assert on_coarse.shape == coarse.shape_zyx
    assert on_coarse.dtype == np.uint8
    assert set(np.unique(on_coarse)) <= {0, 1, 2}
    back = resample_like(on_coarse, coarse, grid, "nearest")
    assert back.shape == labels.shape
    assert back.dtype == labels.dtype
    for label in (1, 2):
        a, b = labels == label, back == label
        dice = 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())
        assert dice > 0.75, (label, dice)
    # the CTVolume path carries the target geometry itself
    volume = CTVolume(labels.astype(np.int16), grid, source="labels")
    down = resample_to_spacing(volume, coarse.spacing_mm, interpolator="nearest")
    up = resample_like(down, None, grid, "nearest")
    assert up.geometry == grid
    assert up.hu.shape == grid.shape_zyx


@pytest.mark.parametrize("name", ["oblique-anisotropic", "flipped-oblique"])
def test_label_map_through_an_axis_aligned_grid_and_back(name: str) -> None:
    """Oblique input -> axis-aligned working grid covering it -> back onto the oblique input grid."""
    grid = GRIDS[name]
    corners = np.array([[i, j, k] for i in (0, grid.size[0] - 1) for j in (0, grid.size[1] - 1)
                        for k in (0, grid.size[2] - 1)], dtype=float)
    world = grid.index_to_world(corners)
    lo, hi = world.min(axis=0), world.max(axis=0)
    spacing = 0.7
    axial = Geometry(size=tuple(int(np.ceil((h - low) / spacing)) + 1 for low, h in zip(lo, hi, strict=True)),
                     spacing_mm=(spacing,) * 3, origin_mm=tuple(float(v) for v in lo))
    labels = blob_labels(grid)
    there = resample_like(labels, grid, axial, "nearest")
    assert there.shape == axial.shape_zyx
    # the blobs keep their volume in mm^3 on the working grid
    voxel_in, voxel_out = np.prod(grid.spacing_mm), spacing**3
    for label in (1, 2):
        assert (there == label).sum() * voxel_out == pytest.approx((labels == label).sum() * voxel_in, rel=0.1)
    back = resample_like(there, axial, grid, "nearest")
    assert back.shape == labels.shape
    for label in (1, 2):
        a, b = labels == label, back == label
        assert 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum()) > 0.9


@pytest.mark.parametrize("name", list(GRIDS))
def test_nearest_upsample_then_downsample_is_exact(name: str) -> None:
    """Coarse -> grid with half the spacing -> coarse: every coarse voxel centre is hit exactly."""
    coarse = GRIDS[name]
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 5, size=coarse.shape_zyx, dtype=np.uint8)
    fine = target_geometry_for_spacing(coarse, tuple(s / 2 for s in coarse.spacing_mm))
    assert fine.size == tuple(2 * n for n in coarse.size)
    there = resample_like(labels, coarse, fine, "nearest")
    back = resample_like(there, fine, coarse, "nearest")
    np.testing.assert_array_equal(back, labels)


def test_resample_rejects_bad_arguments() -> None:
    grid = GRIDS["anisotropic"]
    volume = CTVolume(np.zeros(grid.shape_zyx, dtype=np.int16), grid)
    with pytest.raises(ValueError, match="spacing_mm"):
        resample_to_spacing(volume, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="cubic"):
        resample_to_spacing(volume, (1.0, 1.0, 1.0), interpolator="cubic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not match"):
        resample_like(np.zeros((3, 3, 3)), grid, GRIDS["oblique-anisotropic"])


@pytest.mark.parametrize("name", list(WINDOWS))
def test_named_windows_map_their_bounds_to_0_and_1(name: str) -> None:
    level, width = WINDOWS[name]
    hu = np.array([level - width / 2, level, level + width / 2, level - width, level + width, -3000, 3000])
    out = apply_window(hu, name)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.0, 0.5, 1.0, 0.0, 1.0, 0.0, 1.0], atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(level=st.floats(-1000, 1000), width=st.floats(1, 4000),
       hu=st.lists(st.floats(-4000, 4000), min_size=1, max_size=30))
def test_window_is_a_clipped_linear_map(level: float, width: float, hu: list[float]) -> None:
    values = np.asarray(hu)
    out = apply_window(values, (level, width))
    assert np.all((out >= 0) & (out <= 1))
    expected = np.clip((values - (level - width / 2)) / width, 0, 1)
    # float32 arithmetic: error grows with the HU magnitudes relative to the width
    tol = 8 * np.finfo(np.float32).eps * (abs(level) + width + np.abs(values).max()) / width
    np.testing.assert_allclose(out, expected, atol=tol)
    np.testing.assert_allclose(apply_window(np.array([level - width / 2, level + width / 2]), (level, width)),
                               [0.0, 1.0], atol=tol)


def test_unknown_window_names_the_value_and_the_choices() -> None:
    with pytest.raises(ValueError, match="bone") as info:
        apply_window(np.zeros(3), "bone")
    for choice in WINDOWS:
        assert choice in str(info.value)
    with pytest.raises(ValueError, match="width"):
        apply_window(np.zeros(3), (40.0, 0.0))


def a_chest(grid: Geometry) -> CTVolume:
    """Air (-1000 HU) around an elliptic-cylinder body (40 HU) with two lungs (-850 HU), plus a table.

    The table is a separate slab below the body; it must not enter the crop.
    """
    world = world_of_voxels(grid)
    centre = grid.index_to_world((np.asarray(grid.size) - 1) / 2.0)
    rel = world - centre
    d = grid.direction_matrix
    u, v, w = rel @ d[:, 0], rel @ d[:, 1], rel @ d[:, 2]
    half = np.asarray(grid.size) * np.asarray(grid.spacing_mm) / 2
    hu = np.full(grid.shape_zyx, -1000, dtype=np.int16)
    body = ((u / (0.6 * half[0])) ** 2 + (v / (0.5 * half[1])) ** 2 < 1) & (np.abs(w) < 0.7 * half[2])
    hu[body] = 40
    for side in (-1, 1):
        lung = ((u - side * 0.28 * half[0]) / (0.2 * half[0])) ** 2 + (v / (0.3 * half[1])) ** 2 < 1
        hu[body & lung & (np.abs(w) < 0.6 * half[2])] = -850
    table = (v > 0.75 * half[1]) & (v < 0.85 * half[1]) & (np.abs(u) < 0.9 * half[0])
    hu[table] = 200
    return CTVolume(hu, grid, source="a-chest.nii.gz")


@pytest.mark.parametrize("name", ["anisotropic", "oblique-anisotropic", "flipped-oblique"])
def test_crop_keeps_world_coordinates_and_uncrop_restores(name: str) -> None:
    grid = GRIDS[name]
    grid = Geometry(size=tuple(2 * n for n in grid.size), spacing_mm=grid.spacing_mm, origin_mm=grid.origin_mm,
                    direction=grid.direction)
    volume = a_chest(grid)
    margin_mm = 3.0
    cropped, box = crop_to_chest(volume, margin_mm=margin_mm)
    assert isinstance(box, CropBox)
    assert cropped.hu.shape == box.shape_zyx
    assert cropped.hu.shape < volume.hu.shape or cropped.hu.size < volume.hu.size
    np.testing.assert_array_equal(cropped.hu, volume.hu[box.slices])
    # every kept voxel keeps its LPS position
    k, j, i = (np.arange(n) for n in box.shape_zyx)
    ijk = np.stack(np.meshgrid(i, j, k, indexing="ij"), axis=-1).reshape(-1, 3)
    full_ijk = ijk + np.asarray(box.start_index_xyz)
    np.testing.assert_allclose(cropped.geometry.index_to_world(ijk), grid.index_to_world(full_ijk), atol=1e-9)
    assert cropped.geometry.direction == grid.direction
    assert cropped.geometry.spacing_mm == grid.spacing_mm
    # the body, and a margin around it where the grid allows, are inside the box; the table is not
    body = (volume.hu == 40) | (volume.hu == -850)
    margins = [math.ceil(margin_mm / s) for s in grid.spacing_mm[::-1]]
    for axis in range(3):
        hits = np.flatnonzero(body.any(axis=tuple(a for a in range(3) if a != axis)))
        assert box.start_zyx[axis] <= max(0, hits[0] - margins[axis])
        assert box.stop_zyx[axis] >= min(volume.hu.shape[axis], hits[-1] + 1 + margins[axis])
        # ... and the box is not much larger: margin plus at most two ~4 mm detection blocks
        slack = margins[axis] + 2 * max(1, round(4.0 / grid.spacing_mm[2 - axis])) + 1
        assert box.start_zyx[axis] >= hits[0] - slack
        assert box.stop_zyx[axis] <= hits[-1] + 1 + slack
    table_only = (volume.hu == 200) & ~np.pad(np.ones(box.shape_zyx, bool),
                                               [(lo, n - hi) for lo, hi, n in
                                                zip(box.start_zyx, box.stop_zyx, volume.hu.shape, strict=True)])
    assert table_only.sum() > 0.5 * (volume.hu == 200).sum()
    restored = uncrop(cropped.hu, box, volume.hu.shape, fill_value=-1000)
    outside = np.ones(volume.hu.shape, bool)
    outside[box.slices] = False
    np.testing.assert_array_equal(restored[box.slices], volume.hu[box.slices])
    assert np.all(restored[outside] == -1000)
    labels = (cropped.hu > 0).astype(np.uint8)
    assert uncrop(labels, box).shape == volume.hu.shape


def test_all_air_volume_is_an_input_error_naming_the_source() -> None:
    grid = GRIDS["oblique-anisotropic"]
    volume = CTVolume(np.full(grid.shape_zyx, -1000, dtype=np.int16), grid, source="empty-scan.nii.gz")
    with pytest.raises(InputError, match="empty-scan.nii.gz") as info:
        crop_to_chest(volume)
    assert "no body" in info.value.reason


def test_uncrop_rejects_mismatched_shapes() -> None:
    box = CropBox(start_zyx=(1, 2, 3), stop_zyx=(4, 6, 8), full_shape_zyx=(10, 10, 10))
    with pytest.raises(ValueError, match="shape"):
        uncrop(np.zeros((2, 2, 2)), box, (10, 10, 10))
    with pytest.raises(ValueError, match="full_shape"):
        uncrop(np.zeros(box.shape_zyx), box, (9, 10, 10))


def test_mask_box_is_the_nonzero_extent_grown_and_clipped():
    mask = np.zeros((10, 12, 14), np.uint8)
    mask[2:4, 5:6, 0:3] = 1
    box = mask_box(mask)
    assert (box.start_zyx, box.stop_zyx, box.full_shape_zyx) == ((2, 5, 0), (4, 6, 3), (10, 12, 14))
    grown = mask_box(mask, margin_voxels=3)
    assert (grown.start_zyx, grown.stop_zyx) == ((0, 2, 0), (7, 9, 6))  # clipped at the array's edges
    assert mask[box.slices].sum() == mask.sum()
    per_axis = mask_box(mask, margin_voxels=(1, 0, 5))  # one margin per axis (Z, Y, X)
    assert (per_axis.start_zyx, per_axis.stop_zyx) == ((1, 5, 0), (5, 6, 8))
    assert mask_box(np.zeros((3, 3, 3))) is None
