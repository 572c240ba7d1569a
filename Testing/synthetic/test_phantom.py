"""Synthetic CTPA phantoms: determinism, ground truth consistent with the image, plausible HU, overrides."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, replace

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from PELabelUpLib.geometry import Geometry
from PELabelUpLib.synthetic.grid import MAX_DRAWN_VOXELS, rotation
from PELabelUpLib.synthetic.phantom import generate_phantom, plan_phantom
from PELabelUpLib.synthetic.types import Case

TILT = tuple(float(v) for v in rotation(np.array([1.0, 0.0, 0.0]), 12.0).ravel())
# (seed, overrides): a wide axial field of view, an oblique grid, a small anisotropic targeted one, a negative
GEOMETRIES = {
    "axial-wide": (11, {"size_xy": 144, "n_slices": 64, "spacing_mm": (2.4, 2.4, 3.0), "n_emboli": 3}),
    "oblique": (12, {"size_xy": (128, 112), "n_slices": 56, "spacing_mm": (1.5, 1.6, 2.0), "direction": TILT,
                     "positive": True}),
    "anisotropic-small": (13, {"size_xy": 96, "n_slices": 60, "spacing_mm": (0.7, 0.7, 1.6), "n_emboli": 2}),
    "negative": (11, {"size_xy": 144, "n_slices": 64, "spacing_mm": (2.4, 2.4, 3.0), "positive": False}),
}


@pytest.fixture(scope="module", params=list(GEOMETRIES))
def a_phantom(request) -> tuple[str, dict, Case]:
    seed, overrides = GEOMETRIES[request.param]
    return request.param, overrides, generate_phantom(seed, **overrides)


def test_same_seed_gives_identical_arrays_and_other_seeds_differ():
    overrides = {"size_xy": 96, "n_slices": 40, "spacing_mm": (1.6, 1.6, 2.5), "positive": True}
    a, b, c = (generate_phantom(s, **overrides) for s in (5, 5, 6))
    for name in ("emboli", "arteries", "lungs", "slice_labels"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert np.array_equal(a.ct.hu, b.ct.hu)
    assert a.ct.geometry == b.ct.geometry
    assert a.study_labels == b.study_labels
    assert a.emboli_list == b.emboli_list
    assert json.dumps(a.params, sort_keys=True) == json.dumps(b.params, sort_keys=True)
    assert not np.array_equal(a.ct.hu, c.ct.hu)
    assert a.case_id == "phantom-000005"
    assert c.case_id == "phantom-000006"


def test_arrays_and_geometry_are_as_requested(a_phantom):
    _, overrides, case = a_phantom
    g = case.ct.geometry
    size_xy = overrides["size_xy"]
    nx, ny = (size_xy, size_xy) if isinstance(size_xy, int) else size_xy
    assert g.size == (nx, ny, overrides["n_slices"])
    assert g.spacing_mm == overrides["spacing_mm"]
    if "direction" in overrides:
        assert np.allclose(g.direction, overrides["direction"], atol=1e-12)
    assert case.ct.hu.dtype == np.int16
    assert case.ct.hu.shape == g.shape_zyx
    for name in ("emboli", "arteries", "lungs"):
        arr = getattr(case, name)
        assert arr.dtype == np.uint8, name
        assert arr.shape == g.shape_zyx, name
    image = case.ct.to_sitk()
    assert image.GetSpacing() == pytest.approx(g.spacing_mm)
    assert image.GetDirection() == pytest.approx(g.direction)
    assert set(np.unique(case.arteries).tolist()) <= {0, 1}
    assert set(np.unique(case.lungs).tolist()) == {0, 1, 2} or not case.lungs.any()
    json.dumps(case.params)  # JSON-serialisable draws


def test_ground_truth_is_consistent(a_phantom):
    name, overrides, case = a_phantom
    emb = case.emboli
    assert np.all(case.arteries[emb > 0] == 1), "every embolus voxel lies in an artery"
    has_clot = emb.reshape(emb.shape[0], -1).any(axis=1)
    assert case.slice_labels.dtype == bool
    assert np.array_equal(case.slice_labels, has_clot)
    assert case.positive == bool(has_clot.any()) == (not case.study_labels["negative_exam_for_pe"])
    present = sorted(np.unique(emb[emb > 0]).tolist())
    assert present == [e.label for e in case.emboli_list] == list(range(1, len(case.emboli_list) + 1))
    counts = np.bincount(emb.ravel(), minlength=len(present) + 1)
    voxel_mm3 = float(np.prod(case.ct.geometry.spacing_mm))
    for e in case.emboli_list:
        assert e.voxels == counts[e.label]
        assert e.volume_mm3 == pytest.approx(e.voxels * voxel_mm3)
    expected = overrides.get("n_emboli")
    if expected is not None:
        assert len(case.emboli_list) == expected
    if overrides.get("positive") is False:
        assert not emb.any()
        assert not case.emboli_list
        assert not case.slice_labels.any()
    labels = case.study_labels
    if case.positive:
        assert labels["rv_lv_ratio_gte_1"] + labels["rv_lv_ratio_lt_1"] == 1
        assert labels["central_pe"] == int(any(e.level == "central" for e in case.emboli_list))
        assert labels["leftsided_pe"] + labels["rightsided_pe"] + labels["central_pe"] >= 1
    else:
        assert labels["rv_lv_ratio_gte_1"] == labels["rv_lv_ratio_lt_1"] == 0
    assert labels["indeterminate"] == 0


def test_hu_statistics_are_plausible(a_phantom):
    name, _, case = a_phantom
    hu = case.ct.hu.astype(np.float32)
    sigma = case.params["noise_sigma_hu"]
    pa_hu = case.params["anatomy"]["contrast"]["pa_hu"]
    assert np.median(hu[case.lungs > 0]) < -700
    # artery lumen away from walls and clots: the pulmonary-arterial enhancement, 250-550 HU
    lumen = ndimage.binary_erosion(case.arteries > 0, iterations=2) & ~ndimage.binary_dilation(case.emboli > 0,
                                                                                               iterations=2)
    assert lumen.sum() > 50
    median_lumen = float(np.median(hu[lumen]))
    assert 250 - 2 * sigma <= median_lumen <= 550 + 2 * sigma
    assert abs(median_lumen - pa_hu) < 60
    for e in case.emboli_list:  # clot interior: its painted HU, within noise
        core = ndimage.binary_erosion(case.emboli == e.label, iterations=1)
        if core.sum() >= 30:
            assert 20 - 30 <= hu[core].mean() <= 90 + 30
            assert abs(hu[core].mean() - e.hu) < 40
    if name.startswith("axial-wide"):  # the field of view reaches air round the body
        corners = hu[:, :6, :6]
        assert abs(np.median(corners) + 1000) < 15
    assert hu.max() > 600, "bone and the dense superior vena cava are bright"


def test_negative_override_keeps_the_patient():
    common = {"size_xy": 96, "n_slices": 40, "spacing_mm": (1.8, 1.8, 2.5)}
    pos = plan_phantom(21, positive=True, **common)
    neg = plan_phantom(21, positive=False, **common)
    assert pos.geometry == neg.geometry
    assert pos.anatomy == neg.anatomy
    assert pos.n_emboli >= 1
    assert neg.n_emboli == 0


def test_mixed_contrast_phase_brightens_only_the_systemic_blood_pools():
    systemic = ("aorta_hu", "lv_hu", "la_hu", "vein_hu")
    ratios = []
    for seed in range(200):
        pulmonary, mixed = plan_phantom(seed), plan_phantom(seed, contrast_phase="mixed")
        assert plan_phantom(seed, contrast_phase="pulmonary") == pulmonary
        assert mixed.geometry == pulmonary.geometry and mixed.n_emboli == pulmonary.n_emboli
        assert replace(mixed.anatomy, contrast=pulmonary.anatomy.contrast) == pulmonary.anatomy
        p, m = pulmonary.anatomy.contrast, mixed.anatomy.contrast
        assert {k: v for k, v in asdict(m).items() if k not in systemic} == \
            {k: v for k, v in asdict(p).items() if k not in systemic}
        assert p.aorta_hu <= 250 and p.aorta_hu < p.pa_hu
        assert 0.4 * m.pa_hu <= m.aorta_hu <= m.pa_hu
        assert m.lv_hu / m.aorta_hu == pytest.approx(p.lv_hu / p.aorta_hu)
        assert m.la_hu / m.aorta_hu == pytest.approx(p.la_hu / p.aorta_hu)
        assert p.vein_hu <= m.vein_hu <= max(p.vein_hu, m.la_hu)
        ratios.append(m.aorta_hu / m.pa_hu)
    assert min(ratios) < 0.5 and max(ratios) > 0.9  # the whole range is drawn

    common = {"size_xy": 96, "n_slices": 48, "spacing_mm": (2.0, 2.0, 2.5), "n_emboli": 2}
    pulmonary, mixed = generate_phantom(8, **common), generate_phantom(8, contrast_phase="mixed", **common)
    assert np.array_equal(pulmonary.emboli, mixed.emboli) and np.array_equal(pulmonary.arteries, mixed.arteries)
    assert mixed.params["overrides"]["contrast_phase"] == "mixed"
    a, b = pulmonary.ct.hu.astype(np.int32), mixed.ct.hu.astype(np.int32)
    deep_artery = ndimage.binary_erosion(pulmonary.arteries > 0, iterations=2) & (pulmonary.emboli == 0)
    assert np.array_equal(a[deep_artery], b[deep_artery])  # the pulmonary arteries read as before
    changed = a != b
    assert 0.005 < changed.mean() < 0.3
    gain = np.median(b[changed] - a[changed])
    assert gain > 0, "the aorta and left heart got brighter"


def test_origin_override_is_stamped_and_the_patient_follows():
    origin = (-123.5, 456.25, 789.0)
    case = generate_phantom(3, size_xy=96, n_slices=36, spacing_mm=(2.0, 2.0, 3.0), origin_mm=origin, n_emboli=1)
    assert case.ct.geometry.origin_mm == origin
    assert np.median(case.ct.hu[case.lungs > 0]) < -700
    assert case.lungs.sum() > 1000
    assert len(case.emboli_list) == 1


def test_about_half_of_drawn_studies_are_positive_and_grids_vary():
    plans = [plan_phantom(s) for s in range(300)]
    positive = np.mean([p.n_emboli > 0 for p in plans])
    assert 0.4 < positive < 0.6
    assert all(1 <= p.n_emboli <= 6 for p in plans if p.n_emboli)
    sizes = np.array([p.geometry.size for p in plans])
    spacing = np.array([p.geometry.spacing_mm for p in plans])
    assert sizes[:, :2].min() >= 96
    assert sizes[:, :2].max() <= 512
    assert np.any(sizes[:, 0] != sizes[:, 1])
    assert spacing[:, :2].min() >= 0.6
    assert spacing[:, :2].max() <= 1.5
    assert np.all(spacing[:, 0] == spacing[:, 1])
    assert spacing[:, 2].min() >= 0.6
    assert spacing[:, 2].max() <= 2.5
    assert np.all(sizes.prod(axis=1) <= MAX_DRAWN_VOXELS)
    oblique = [p for p in plans if p.geometry.is_oblique]
    assert 0.1 < len(oblique) / len(plans) < 0.4
    assert all(3 - 1e-6 <= p.grid_record["oblique_angle_deg"] <= 15 + 1e-6 for p in oblique)
    axial = [p for p in plans if not p.geometry.is_oblique]
    assert all(p.geometry.direction == Geometry((1, 1, 1), (1, 1, 1), (0, 0, 0)).direction for p in axial)
    origins = np.array([p.geometry.origin_mm for p in plans])
    assert np.median(origins[:, 0]) < 0
    assert len(np.unique(origins.round(1), axis=0)) == len(plans)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"n_emboli": 7}, "n_emboli"),
        ({"n_emboli": 0, "positive": True}, "contradicts"),
        ({"direction": (1, 0, 0, 0, 2, 0, 0, 0, 1)}, "orthonormal"),
        ({"spacing_mm": (1.0, -1.0, 1.0)}, "spacing_mm"),
        ({"size_xy": 4}, "size_xy"),
        ({"n_slices": 0}, "n_slices"),
        ({"slices": 40}, "unknown override"),
        ({"contrast_phase": "venous"}, "contrast_phase"),
    ],
)
def test_bad_overrides_are_refused(overrides, match):
    with pytest.raises(ValueError, match=match):
        plan_phantom(1, **overrides)


def test_bad_seed_is_refused():
    with pytest.raises(ValueError, match="seed"):
        generate_phantom(-1)


def test_written_image_keeps_the_geometry(a_phantom, tmp_path):
    _, _, case = a_phantom
    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(case.ct.to_sitk(), str(path))
    back = sitk.ReadImage(str(path))
    assert Geometry.from_sitk(back).same_grid(case.ct.geometry)
    assert np.array_equal(sitk.GetArrayFromImage(back), case.ct.hu)


def test_output_does_not_depend_on_the_thread_count():
    """Bit-identical in fresh processes with one and with two BLAS/OpenMP threads."""
    code = ("import hashlib; from PELabelUpLib.synthetic.phantom import generate_phantom; "
            "c = generate_phantom(8, size_xy=64, n_slices=24, spacing_mm=(2.0, 2.0, 3.0), positive=True); "
            "print(hashlib.sha1(c.ct.hu.tobytes() + c.emboli.tobytes() + c.arteries.tobytes()).hexdigest())")
    digests = []
    for threads in ("1", "2"):
        env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
        digests.append(out.stdout.strip())
    assert digests[0] == digests[1]
    assert len(digests[0]) == 40
