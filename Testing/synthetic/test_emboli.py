"""Emboli on plain masks made here: inside the lumen, rim for partial clots, full cross-section for occlusive."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from PELabelUpLib.geometry import Geometry
from PELabelUpLib.synthetic.emboli import (
    CLOT_HU_RANGE,
    EmbolusPlan,
    compact_emboli,
    implant_emboli,
    paint_emboli,
    rasterize_emboli,
    sample_emboli,
    slice_labels,
    study_labels,
    summarize_emboli,
)
from PELabelUpLib.synthetic.grid import rotation
from PELabelUpLib.synthetic.types import LEVELS, ArterySite, Embolus

RADIUS_MM = 5.0


def _cylinder(geometry: Geometry, a: np.ndarray, b: np.ndarray, radius_mm: float) -> np.ndarray:
    """uint8 (Z, Y, X) mask of a straight cylinder a -> b (LPS mm), computed voxel by voxel from the geometry."""
    nz, ny, nx = geometry.shape_zyx
    k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    world = geometry.index_to_world(np.stack([i, j, k], axis=-1).reshape(-1, 3))
    ab = b - a
    t = np.clip((world - a) @ ab / (ab @ ab), 0.0, 1.0)
    dist = np.linalg.norm(world - (a + t[:, None] * ab), axis=1)
    return (dist < radius_mm).reshape(nz, ny, nx).astype(np.uint8)


@pytest.fixture(scope="module", params=["axial", "oblique"])
def a_vessel(request) -> tuple[Geometry, np.ndarray, ArterySite]:
    """A cylinder of radius 5 mm along z through a 0.5 mm grid (axis-aligned or tilted by 12 degrees)."""
    direction = np.eye(3) if request.param == "axial" else rotation(np.array([1.0, 0.3, 0.0]), 12.0)
    size = (48, 48, 64)
    spacing = (0.5, 0.5, 0.5)
    centre = np.array([10.0, -20.0, 30.0])
    origin = centre - direction @ (np.asarray(spacing) * (np.asarray(size) - 1) / 2)
    geometry = Geometry(size=size, spacing_mm=spacing, origin_mm=tuple(origin), direction=tuple(direction.ravel()))
    axis = np.array([0.0, 0.0, 1.0])
    mask = _cylinder(geometry, centre - 40 * axis, centre + 40 * axis, RADIUS_MM)
    site = ArterySite(tuple(centre), tuple(axis), RADIUS_MM, "lobar", "left", branch_id=3)
    return geometry, mask, site


def test_partial_embolus_stays_inside_and_leaves_a_rim(a_vessel):
    geometry, mask, site = a_vessel
    plan = EmbolusPlan("partial", site, site.center_mm, 12.0, 3.5, 45.0, rim_mm=1.0)
    labels = rasterize_emboli([plan], geometry, mask)
    clot = labels == 1
    assert clot.sum() > 50
    assert np.all(mask[clot] == 1), "every embolus voxel lies in the lumen"
    # no clot voxel touches the wall: growing the clot by one voxel stays inside the lumen
    assert np.all(mask[ndimage.binary_dilation(clot)] == 1)
    # lumen voxels remain around the clot where it is thickest: contrast rim on every side
    lumen_left = (mask == 1) & ~clot
    assert lumen_left[ndimage.binary_dilation(clot, iterations=2) & ~clot].sum() > 0.5 * clot.sum() ** (2 / 3)


def test_occlusive_embolus_fills_the_cross_section(a_vessel):
    geometry, mask, site = a_vessel
    plan = EmbolusPlan("occlusive", site, site.center_mm, 10.0, 1.6 * RADIUS_MM, 60.0)
    labels = rasterize_emboli([plan], geometry, mask)
    clot = labels == 1
    assert np.all(mask[clot] == 1)
    # lumen voxels within 3 mm of the clot centre along the vessel are all clot
    nz, ny, nx = geometry.shape_zyx
    k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    world = geometry.index_to_world(np.stack([i, j, k], axis=-1).reshape(-1, 3)).reshape(nz, ny, nx, 3)
    along = (world - np.asarray(site.center_mm)) @ np.asarray(site.direction)
    middle = (np.abs(along) < 3.0) & (mask == 1)
    assert middle.sum() > 100
    assert np.all(clot[middle])
    # and nothing beyond its length
    assert not np.any(clot[np.abs(along) > 5.0 + 0.5])


def test_saddle_embolus_straddles_a_bifurcation():
    geometry = Geometry(size=(80, 80, 60), spacing_mm=(0.8, 0.8, 0.8), origin_mm=(-32.0, -32.0, -24.0))
    fork = np.array([0.0, 0.0, 0.0])
    trunk = _cylinder(geometry, fork - [0, 0, 30], fork, 8.0)
    left = _cylinder(geometry, fork, fork + [40, 0, 12], 6.0)
    right = _cylinder(geometry, fork, fork + [-40, 0, 12], 6.0)
    mask = trunk | left | right
    site = ArterySite(tuple(fork), (0.0, 0.0, 1.0), 8.0, "central", "central", bifurcation=True)
    plan = EmbolusPlan("saddle", site, site.center_mm, 28.0, 14.0, 40.0, rim_mm=1.6)
    labels, kept, emboli = implant_emboli([plan], geometry, mask)
    clot = labels == 1
    assert len(emboli) == 1
    assert emboli[0].kind == "saddle"
    assert np.all(mask[clot] == 1)
    x = geometry.index_to_world(np.argwhere(clot)[:, ::-1])[:, 0]
    assert x.min() < -6.0, "the clot reaches into the right branch"
    assert x.max() > 6.0, "the clot reaches into the left branch"
    assert np.all(mask[ndimage.binary_dilation(clot)] == 1), "a rim of contrast remains"


def test_overlapping_emboli_keep_the_label_map_consistent(a_vessel):
    geometry, mask, site = a_vessel
    same = EmbolusPlan("occlusive", site, site.center_mm, 10.0, 8.0, 50.0)
    shifted = EmbolusPlan("occlusive", site, tuple(np.asarray(site.center_mm) + [0, 0, 4.0]), 10.0, 8.0, 70.0)
    labels, kept, emboli = implant_emboli([same, same, shifted], geometry, mask)
    present = sorted(np.unique(labels[labels > 0]).tolist())
    assert present == list(range(1, len(kept) + 1)) == [e.label for e in emboli]
    assert len(kept) == 2, "the exact duplicate is dropped, the shifted one keeps its own voxels"
    counts = np.bincount(labels.ravel())
    for e in emboli:
        assert e.voxels == counts[e.label]
        assert e.volume_mm3 == pytest.approx(e.voxels * np.prod(geometry.spacing_mm))
    assert kept[1].hu == 70.0


def test_tiny_clots_are_dropped(a_vessel):
    geometry, mask, site = a_vessel
    tiny = EmbolusPlan("occlusive", site, site.center_mm, 0.6, 0.6, 30.0)  # a few voxels at most
    elsewhere = ArterySite((60.0, 60.0, 60.0), (0.0, 0.0, 1.0), 3.0, "segmental", "right")
    off_grid = EmbolusPlan("occlusive", elsewhere, elsewhere.center_mm, 8.0, 5.0, 30.0)
    fine = EmbolusPlan("occlusive", site, tuple(np.asarray(site.center_mm) + [0, 0, 8.0]), 8.0, 8.0, 30.0)
    raw = rasterize_emboli([tiny, off_grid, fine], geometry, mask, min_voxels=20)
    assert not np.any(raw == 1)
    assert not np.any(raw == 2)
    assert np.any(raw == 3)
    labels, kept = compact_emboli(raw, [tiny, off_grid, fine])
    assert kept == [fine]
    assert set(np.unique(labels).tolist()) == {0, 1}
    assert np.array_equal(labels == 1, raw == 3)


def test_summary_and_painting(a_vessel):
    geometry, mask, site = a_vessel
    plan = EmbolusPlan("partial", site, site.center_mm, 12.0, 3.5, 33.0, rim_mm=1.0)
    labels = rasterize_emboli([plan], geometry, mask)
    (embolus,) = summarize_emboli(labels, [plan], geometry)
    assert embolus.voxels == int((labels == 1).sum())
    assert np.linalg.norm(np.asarray(embolus.center_mm) - np.asarray(site.center_mm)) < 1.0
    assert (embolus.kind, embolus.level, embolus.side, embolus.hu) == ("partial", "lobar", "left", 33.0)
    hu = np.full(geometry.shape_zyx, 400.0, dtype=np.float32)
    paint_emboli(hu, labels, [plan])
    assert np.all(hu[labels == 1] == 33.0)
    assert np.all(hu[labels == 0] == 400.0)
    per_slice = slice_labels(labels)
    assert per_slice.shape == (geometry.shape_zyx[0],)
    assert np.array_equal(per_slice, [bool(np.any(labels[k])) for k in range(labels.shape[0])])


def test_rasterize_rejects_a_mask_of_another_grid(a_vessel):
    geometry, mask, site = a_vessel
    with pytest.raises(ValueError, match="does not match"):
        rasterize_emboli([], geometry, mask[:-1])


def _sites() -> list[ArterySite]:
    rng = np.random.default_rng(0)
    sites = [ArterySite(tuple(rng.uniform(-80, 80, 3)), (0.0, 0.0, 1.0), r, level, side, branch_id=i)
             for i, (level, r, side) in enumerate([(lvl, r, side) for lvl, r in zip(LEVELS, (10.0, 5.0, 3.0, 1.4),
                                                                                       strict=True)
                                                   for side in ("left", "right") for _ in range(4)])]
    return [*sites, ArterySite((0.0, 0.0, 0.0), (0.0, 0.5, 0.8), 13.0, "central", "central", bifurcation=True)]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 6), seed=st.integers(0, 2**32 - 1))
def test_sampled_plans_are_well_formed(n, seed):
    sites = _sites()
    plans = sample_emboli(sites, n, np.random.default_rng(seed))
    assert len(plans) == n
    assert sum(p.kind == "saddle" for p in plans) <= 1
    for p in plans:
        assert p.site in sites
        assert CLOT_HU_RANGE[0] <= p.hu <= CLOT_HU_RANGE[1]
        assert p.length_mm > 0
        assert p.radius_mm > 0
        assert (p.kind == "saddle") == p.site.bifurcation
        if p.kind == "occlusive":
            assert p.radius_mm > p.site.radius_mm
            assert p.rim_mm == 0
        if p.kind == "partial":
            assert p.radius_mm < p.site.radius_mm
            assert p.rim_mm > 0
    assert sample_emboli(sites, n, np.random.default_rng(seed)) == plans, "deterministic by rng"


def test_sampling_mixes_levels_and_validates():
    sites = _sites()
    levels = {p.site.level for s in range(20) for p in sample_emboli(sites, 6, np.random.default_rng(s))}
    assert levels == set(LEVELS)
    assert sample_emboli([], 0, np.random.default_rng(0)) == []
    with pytest.raises(ValueError, match="without candidate sites"):
        sample_emboli([], 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="n must be >= 0"):
        sample_emboli(sites, -1, np.random.default_rng(0))


def _embolus(level: str, side: str, kind: str = "partial") -> Embolus:
    return Embolus(1, kind, level, side, (0.0, 0.0, 0.0), 10.0, 50.0, 10, 5.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("emboli", "rv", "expected"),
    [
        ([], True, {"negative_exam_for_pe": 1, "rv_lv_ratio_gte_1": 0, "rv_lv_ratio_lt_1": 0, "central_pe": 0}),
        ([_embolus("segmental", "left")], False,
         {"negative_exam_for_pe": 0, "leftsided_pe": 1, "rightsided_pe": 0, "central_pe": 0, "rv_lv_ratio_lt_1": 1}),
        ([_embolus("central", "central", "saddle")], True,
         {"leftsided_pe": 1, "rightsided_pe": 1, "central_pe": 1, "rv_lv_ratio_gte_1": 1, "rv_lv_ratio_lt_1": 0}),
        ([_embolus("central", "right"), _embolus("lobar", "right")], False,
         {"leftsided_pe": 0, "rightsided_pe": 1, "central_pe": 1}),
    ],
)
def test_study_labels(emboli, rv, expected):
    labels = study_labels(emboli, rv)
    for key, value in expected.items():
        assert labels[key] == value, key
    assert labels["indeterminate"] == labels["chronic_pe"] == labels["true_filling_defect_not_pe"] == 0
    assert set(labels.values()) <= {0, 1}
