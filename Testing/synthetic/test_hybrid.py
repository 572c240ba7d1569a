"""Tests of hybrid real-anatomy cases: mask-derived sites, noise matching, clot implanting, lungs, cases."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from PELabelUpLib.geometry import Geometry
from PELabelUpLib.synthetic.hybrid_implant import (
    NoiseModel,
    correlated_noise,
    estimate_noise,
    implant_clot,
    kernel_sigma_for_lag1,
    lungs_from_hu,
    partial_volume_weights,
)
from PELabelUpLib.synthetic.hybrid_sites import level_from_radius, sites_from_mask


def rotation_zx(deg_z: float, deg_x: float) -> tuple[float, ...]:
    cz, sz = math.cos(math.radians(deg_z)), math.sin(math.radians(deg_z))
    cx, sx = math.cos(math.radians(deg_x)), math.sin(math.radians(deg_x))
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    return tuple(float(v) for v in (rz @ rx).ravel())


def world_of_voxels(geometry: Geometry) -> np.ndarray:
    k, j, i = np.meshgrid(*(np.arange(n) for n in geometry.shape_zyx), indexing="ij")
    return geometry.index_to_world(np.stack([i, j, k], axis=-1))


def segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(((points - a) @ ab) / (ab @ ab), 0.0, 1.0)
    return np.linalg.norm(points - (a + t[..., None] * ab), axis=-1)


# A "Y" in LPS mm: a trunk running posteriorly (+y) that splits into a left (+x) and a right (-x) branch.
JUNCTION = np.array([0.0, 0.0, 0.0])
TRUNK = (np.array([0.0, -40.0, -6.0]), JUNCTION, 9.0)
LEFT = (JUNCTION, np.array([38.0, 18.0, -4.0]), 6.0)
RIGHT = (JUNCTION, np.array([-42.0, 12.0, 2.0]), 6.5)


def a_y_mask(geometry: Geometry) -> np.ndarray:
    world = world_of_voxels(geometry)
    mask = np.zeros(geometry.shape_zyx, dtype=np.uint8)
    for a, b, r in (TRUNK, LEFT, RIGHT):
        mask[segment_distance(world, a, b) <= r] = 1
    return mask


Y_GRIDS = {
    "axial": Geometry(size=(80, 76, 30), spacing_mm=(1.2, 1.2, 1.5), origin_mm=(-48.0, -46.0, -22.0)),
    "oblique-anisotropic": Geometry(
        size=(110, 100, 28), spacing_mm=(0.9, 1.0, 2.0),
        origin_mm=tuple(float(v) for v in -np.asarray(rotation_zx(20, -15)).reshape(3, 3)
                        @ (np.array([110, 100, 28]) * np.array([0.9, 1.0, 2.0]) / 2)),
        direction=rotation_zx(20, -15)),
}


@pytest.mark.parametrize("name", list(Y_GRIDS))
def test_sites_follow_a_y_shaped_tree(name: str) -> None:
    grid = Y_GRIDS[name]
    mask = a_y_mask(grid)
    sites = sites_from_mask(mask, grid)
    assert len(sites) >= 8
    edt = ndimage.distance_transform_edt(mask, sampling=grid.spacing_mm[::-1])
    vox = max(grid.spacing_mm)
    for site in sites:
        c = np.asarray(site.center_mm)
        ijk = np.rint(grid.world_to_index(c)).astype(int)
        assert mask[ijk[2], ijk[1], ijk[0]], site
        assert edt[mask > 0].min() <= site.radius_mm <= edt.max() + 1e-9
        assert abs(np.linalg.norm(site.direction) - 1) < 1e-9
        assert site.level == ("central" if site.side == "central" else level_from_radius(site.radius_mm))
        dists = [segment_distance(c, a, b) for a, b, _ in (TRUNK, LEFT, RIGHT)]
        nearest = int(np.argmin(dists))
        true_radius = (TRUNK, LEFT, RIGHT)[nearest][2]
        a, b, _ = (TRUNK, LEFT, RIGHT)[nearest]
        if np.linalg.norm(c - JUNCTION) > 2.5 * TRUNK[2]:
            assert site.side == ("central", "left", "right")[nearest], site
            if np.linalg.norm(c - a) > true_radius and np.linalg.norm(c - b) > true_radius:
                # away from the end caps: on the centreline, radius within a voxel, direction along the tube
                assert dists[nearest] <= vox
                assert abs(site.radius_mm - true_radius) <= vox
                axis = (b - a) / np.linalg.norm(b - a)
                assert abs(float(np.dot(site.direction, axis))) > 0.9, site
    bifurcations = [s for s in sites if s.bifurcation]
    assert len(bifurcations) == 1
    assert np.linalg.norm(np.asarray(bifurcations[0].center_mm) - JUNCTION) < 1.5 * TRUNK[2]
    assert {s.side for s in sites} == {"central", "left", "right"}


def test_sites_of_an_empty_mask_and_a_wrong_shape() -> None:
    grid = Y_GRIDS["axial"]
    assert sites_from_mask(np.zeros(grid.shape_zyx, np.uint8), grid) == []
    with pytest.raises(ValueError, match="shape"):
        sites_from_mask(np.zeros((3, 4, 5), np.uint8), grid)


@pytest.mark.parametrize(("radius", "level"), [(11.0, "central"), (8.0, "central"), (7.9, "lobar"), (4.0, "lobar"),
                                               (3.0, "segmental"), (1.9, "subsegmental")])
def test_level_thresholds(radius: float, level: str) -> None:
    assert level_from_radius(radius) == level


def a_noisy_tube(noise: NoiseModel, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A 500 HU tube (radius 14 voxels) with a slow contrast gradient and the given noise, in -100 HU tissue."""
    shape = (48, 64, 64)
    k, j, i = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    mask = ((j - 32) ** 2 + (i - 32) ** 2 <= 14**2).astype(np.uint8)
    hu = np.where(mask > 0, 500.0 + 1.5 * k, -100.0)
    hu = hu + correlated_noise(shape, noise, np.random.default_rng(seed))
    return np.rint(hu).astype(np.int16), mask


@pytest.mark.parametrize("rho", [0.0, 0.2, 0.45])
def test_noise_estimate_recovers_sigma_and_correlation(rho: float) -> None:
    kernel = kernel_sigma_for_lag1(rho)
    truth = NoiseModel(sigma_hu=30.0, lag1_correlation_zyx=(rho,) * 3, kernel_sigma_vox_zyx=(kernel,) * 3,
                       n_voxels=0)
    hu, mask = a_noisy_tube(truth, seed=3)
    model = estimate_noise(hu, mask)
    assert model.sigma_hu == pytest.approx(30.0, rel=0.08)
    np.testing.assert_allclose(model.lag1_correlation_zyx, rho, atol=0.06)


def test_correlated_noise_has_the_requested_sigma_and_lag1() -> None:
    kernel = kernel_sigma_for_lag1(0.3)
    model = NoiseModel(sigma_hu=25.0, lag1_correlation_zyx=(0.3,) * 3, kernel_sigma_vox_zyx=(kernel, 0.0, kernel),
                       n_voxels=0)
    field = correlated_noise((40, 50, 60), model, np.random.default_rng(0))
    assert field.dtype == np.float32
    assert float(field.std()) == pytest.approx(25.0, rel=0.03)
    lag_z = np.corrcoef(field[:-1].ravel(), field[1:].ravel())[0, 1]
    lag_y = np.corrcoef(field[:, :-1].ravel(), field[:, 1:].ravel())[0, 1]
    assert lag_z == pytest.approx(0.3, abs=0.03)
    assert abs(lag_y) < 0.03


@pytest.fixture(scope="module")
def real_crop(real_cta_dir: Path) -> tuple[np.ndarray, np.ndarray, Geometry]:
    ct = sitk.ReadImage(str(real_cta_dir / "cta_crop.nii.gz"))
    mask = sitk.ReadImage(str(real_cta_dir / "pulmonary_artery.nii.gz"))
    return sitk.GetArrayFromImage(ct), sitk.GetArrayFromImage(mask), Geometry.from_sitk(ct)


@pytest.fixture(scope="module")
def real_sites(real_crop: tuple[np.ndarray, np.ndarray, Geometry]) -> list:
    _, mask, geometry = real_crop
    return sites_from_mask(mask, geometry)


def test_real_mask_sites_are_plausible(real_crop: tuple, real_sites: list) -> None:
    _, mask, geometry = real_crop
    edt = ndimage.distance_transform_edt(mask > 0, sampling=geometry.spacing_mm[::-1])
    assert len(real_sites) >= 8
    for site in real_sites:
        ijk = np.rint(geometry.world_to_index(np.asarray(site.center_mm))).astype(int)
        assert mask[ijk[2], ijk[1], ijk[0]] > 0
        assert edt[mask > 0].min() <= site.radius_mm <= edt.max() + 1e-9
        # the EDT at the site's own voxel is its radius
        assert site.radius_mm == pytest.approx(edt[ijk[2], ijk[1], ijk[0]])
    levels = {s.level for s in real_sites}
    assert "central" in levels
    assert sum(s.level in ("central", "lobar") for s in real_sites) >= 0.7 * len(real_sites)
    sides = {side: [s.center_mm[0] for s in real_sites if s.side == side] for side in ("left", "right")}
    assert sides["left"]
    assert sides["right"]
    assert np.mean(sides["left"]) > np.mean(sides["right"])  # LPS +x is the patient's left
    assert sum(s.bifurcation for s in real_sites) == 1


def test_real_noise_estimate_is_plausible(real_crop: tuple) -> None:
    hu, mask, _ = real_crop
    model = estimate_noise(hu, mask)
    assert 8.0 < model.sigma_hu < 80.0
    assert all(0.0 <= r < 0.8 for r in model.lag1_correlation_zyx)
    assert model.n_voxels > 1000


def a_clot_label_map(mask: np.ndarray, geometry: Geometry, sites: list, picks: tuple[int, ...]) -> np.ndarray:
    """Spheres of 0.8 x the site radius at the chosen sites, clipped to the lumen; labels 1, 2, ..."""
    world = world_of_voxels(geometry)
    labels = np.zeros(mask.shape, dtype=np.uint8)
    for label, index in enumerate(picks, start=1):
        site = sites[index]
        ball = np.linalg.norm(world - np.asarray(site.center_mm), axis=-1) <= 0.8 * site.radius_mm
        labels[ball & (mask > 0) & (labels == 0)] = label
    return labels


def test_implant_paints_noise_matched_clot_only_on_embolus_voxels(real_crop: tuple, real_sites: list) -> None:
    hu, mask, geometry = real_crop
    noise = estimate_noise(hu, mask)
    labels = a_clot_label_map(mask, geometry, real_sites, (0, 3, len(real_sites) // 2))
    clot_hu = {1: 25.0, 2: 60.0, 3: 85.0}
    out = implant_clot(hu, mask, labels, clot_hu, noise, np.random.default_rng(5))
    assert out.dtype == np.int16
    np.testing.assert_array_equal(out[labels == 0], hu[labels == 0])
    alpha = partial_volume_weights(labels, mask)
    assert np.all(alpha[labels == 0] == 0)
    for label, value in clot_hu.items():
        pure = (labels == label) & (alpha == 1.0)
        n = int(pure.sum())
        assert n > 30, (label, n)
        # mean within a few standard errors (correlated noise: allow for fewer independent samples)
        assert abs(float(out[pure].mean()) - value) < 4 * noise.sigma_hu / math.sqrt(n / 4) + 1.0
        assert float(out[pure].std()) == pytest.approx(noise.sigma_hu, rel=0.25)
        # edge voxels mix with the contrast: brighter than the clot, darker than the lumen
        edge = (labels == label) & (alpha < 0.95)
        assert edge.any()
        assert value < float(out[edge].mean()) < float(np.median(hu[(mask > 0) & (labels == 0)]))


def test_implant_rejects_clot_outside_the_lumen(real_crop: tuple) -> None:
    hu, mask, _ = real_crop
    labels = np.zeros(mask.shape, np.uint8)
    labels[0, 0, 0] = 1
    noise = NoiseModel(20.0, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), 0)
    with pytest.raises(ValueError, match="outside the artery mask"):
        implant_clot(hu, mask, labels, {1: 50.0}, noise, np.random.default_rng(0))


def test_lungs_from_hu_split_left_and_right(real_crop: tuple) -> None:
    hu, mask, geometry = real_crop
    lungs = lungs_from_hu(hu, geometry)
    assert lungs.dtype == np.uint8
    assert set(np.unique(lungs)) == {0, 1, 2}
    assert np.all(hu[lungs > 0] < -400)
    assert not np.any((lungs > 0) & (mask > 0))
    world_x = world_of_voxels(geometry)[..., 0]
    assert world_x[lungs == 1].max() < world_x[lungs == 2].min()  # right lung (1) at lower LPS x
    assert (lungs > 0).sum() > 0.2 * lungs.size


# ---- whole hybrid cases ------------------------------------------------------------------------------------


def make_case(folder: Path, seed: int, n_emboli: int | None = None):
    from PELabelUpLib.synthetic.hybrid import make_hybrid_case

    return make_hybrid_case(folder / "cta_crop.nii.gz", folder / "pulmonary_artery.nii.gz", seed, n_emboli=n_emboli)


@pytest.mark.parametrize("seed", [0, 3, 11])
def test_hybrid_case_ground_truth(real_cta_dir: Path, real_crop: tuple, seed: int) -> None:
    from PELabelUpLib.io.rspect import complete_study_labels

    hu, mask, geometry = real_crop
    case = make_case(real_cta_dir, seed, n_emboli=3)
    assert case.case_id == f"hybrid-{seed:06d}"
    assert case.ct.geometry.same_grid(geometry)
    assert case.ct.hu.dtype == np.int16
    labels = case.emboli
    assert labels.dtype == np.uint8
    assert labels.shape == hu.shape
    np.testing.assert_array_equal(case.arteries, (mask > 0).astype(np.uint8))
    # every embolus voxel inside the real artery mask; every other voxel's HU unchanged, exactly
    assert labels.any()
    assert not np.any((labels > 0) & (mask == 0))
    np.testing.assert_array_equal(case.ct.hu[labels == 0], hu[labels == 0])
    # the emboli list describes the label map
    assert [e.label for e in case.emboli_list] == sorted(int(v) for v in np.unique(labels) if v)
    for e in case.emboli_list:
        assert e.voxels == int((labels == e.label).sum())
        assert 20.0 <= e.hu <= 90.0
    # clot HU and noise: pure-clot voxels (no partial volume) have the clot's HU plus the measured noise
    sigma = case.params["noise_sigma_hu"]
    alpha = partial_volume_weights(labels, mask)
    for e in case.emboli_list:
        pure = (labels == e.label) & (alpha == 1.0)
        n = int(pure.sum())
        if n < 20:
            continue
        mean = float(case.ct.hu[pure].mean())
        assert abs(mean - e.hu) < 4 * sigma / math.sqrt(n / 4) + 1.0, (e, mean)
        assert 20.0 - 4 * sigma / math.sqrt(n / 4) < mean < 90.0 + 4 * sigma / math.sqrt(n / 4)
        if n >= 60:
            assert float(case.ct.hu[pure].std()) == pytest.approx(sigma, rel=0.25), e
        # the clot is a filling defect: far darker than the contrast it replaced
        assert mean < float(np.median(hu[pure])) - 250
    # slice and study labels agree with the label map and the RSPECT rules
    np.testing.assert_array_equal(case.slice_labels, labels.any(axis=(1, 2)))
    assert case.positive
    full = complete_study_labels(case.study_labels, case.slice_labels)  # raises on a broken RSPECT rule
    assert full == {k: case.study_labels.get(k, 0) for k in full}
    s = case.study_labels
    assert s["negative_exam_for_pe"] == 0
    assert s["rv_lv_ratio_lt_1"] == 1
    assert s["rv_lv_ratio_gte_1"] == 0
    assert s["central_pe"] == int(any(e.level == "central" for e in case.emboli_list))
    assert s["leftsided_pe"] == int(any(e.side == "left" or e.kind == "saddle" for e in case.emboli_list))
    assert s["rightsided_pe"] == int(any(e.side == "right" or e.kind == "saddle" for e in case.emboli_list))
    # lungs: label 1 right (lower LPS x), 2 left, never inside the arteries
    assert set(np.unique(case.lungs)) == {0, 1, 2}
    assert not np.any((case.lungs > 0) & (mask > 0))


def test_negative_hybrid_case_is_the_crop(real_cta_dir: Path, real_crop: tuple) -> None:
    hu, mask, _ = real_crop
    case = make_case(real_cta_dir, 42, n_emboli=0)
    np.testing.assert_array_equal(case.ct.hu, hu)
    assert not case.emboli.any()
    assert case.emboli_list == []
    assert not case.slice_labels.any()
    assert not case.positive
    assert case.study_labels["negative_exam_for_pe"] == 1
    assert sum(case.study_labels.values()) == 1
    np.testing.assert_array_equal(case.arteries, (mask > 0).astype(np.uint8))


def test_hybrid_cases_are_deterministic_by_seed(real_cta_dir: Path) -> None:
    a, b, c = make_case(real_cta_dir, 7), make_case(real_cta_dir, 7), make_case(real_cta_dir, 8)
    np.testing.assert_array_equal(a.ct.hu, b.ct.hu)
    np.testing.assert_array_equal(a.emboli, b.emboli)
    assert a.emboli_list == b.emboli_list
    assert a.params == b.params
    assert 1 <= len(a.emboli_list) <= 3
    assert not (np.array_equal(a.ct.hu, c.ct.hu) and np.array_equal(a.emboli, c.emboli))
    # the cached real anatomy is shared read-only, so no case can alter the next one
    a.ct.hu[0, 0, 0] += 1
    np.testing.assert_array_equal(make_case(real_cta_dir, 7).ct.hu, b.ct.hu)


def test_hybrid_case_input_errors(real_cta_dir: Path, tmp_path: Path) -> None:
    from PELabelUpLib.errors import InputError
    from PELabelUpLib.synthetic.hybrid import make_hybrid_case

    ct_path = real_cta_dir / "cta_crop.nii.gz"
    with pytest.raises(ValueError, match="n_emboli"):
        make_case(real_cta_dir, 1, n_emboli=-1)
    with pytest.raises(InputError, match="missing.nii.gz"):
        make_hybrid_case(ct_path, tmp_path / "missing.nii.gz", 1)
    mask = sitk.ReadImage(str(real_cta_dir / "pulmonary_artery.nii.gz"))
    shifted = tmp_path / "shifted_mask.nii.gz"
    mask.SetOrigin(tuple(o + 3.0 for o in mask.GetOrigin()))
    sitk.WriteImage(mask, str(shifted))
    with pytest.raises(InputError, match="does not match"):
        make_hybrid_case(ct_path, shifted, 1)
    empty = tmp_path / "empty_mask.nii.gz"
    blank = sitk.Image(mask.GetSize(), sitk.sitkUInt8)
    blank.CopyInformation(sitk.ReadImage(str(ct_path)))
    sitk.WriteImage(blank, str(empty))
    with pytest.raises(InputError, match="empty"):
        make_hybrid_case(ct_path, empty, 1)
