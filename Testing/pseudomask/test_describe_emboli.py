"""describe_emboli: sizes, index and LPS centroids (checked against SimpleITK), peak heat."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from PELabelUpLib.geometry import Geometry
from PELabelUpLib.pseudomask import describe_emboli, emboli_count


@pytest.fixture
def an_oblique_geometry() -> Geometry:
    """(x, y, z) = (8, 7, 6) voxels of 0.7 x 0.8 x 1.5 mm, rotated 30 degrees about z and flipped in y."""
    c, s = np.cos(np.pi / 6), np.sin(np.pi / 6)
    rotation = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]]) @ np.diag([1.0, -1.0, 1.0])
    return Geometry(size=(8, 7, 6), spacing_mm=(0.7, 0.8, 1.5), origin_mm=(-100.0, 50.0, 20.0),
                    direction=tuple(rotation.ravel()))


@pytest.fixture
def an_emboli_mask() -> np.ndarray:
    """``(Z, Y, X)``: a 2x2x4 box (z 1-2, y 2-3, x 1-4) and a single voxel at (z, y, x) = (5, 6, 7)."""
    mask = np.zeros((6, 7, 8), dtype=bool)
    mask[1:3, 2:4, 1:5] = True
    mask[5, 6, 7] = True
    return mask


def test_components_are_measured_in_index_and_lps(an_emboli_mask, an_oblique_geometry):
    heat = np.zeros(an_emboli_mask.shape)
    heat[2, 3, 4] = 0.7
    heat[5, 6, 7] = 0.2
    emboli = describe_emboli(an_emboli_mask, heat, an_oblique_geometry)
    assert [e["label"] for e in emboli] == [1, 2]
    box, dot = emboli
    assert box["voxels"] == 16
    assert box["volume_mm3"] == pytest.approx(16 * 0.7 * 0.8 * 1.5)
    assert box["centroid_ijk"] == pytest.approx((2.5, 2.5, 1.5))  # (x, y, z) index order
    assert dot["centroid_ijk"] == pytest.approx((7.0, 6.0, 5.0))
    image = an_oblique_geometry.array_to_sitk(an_emboli_mask.astype(np.uint8))
    for embolus in emboli:
        expected = image.TransformContinuousIndexToPhysicalPoint(embolus["centroid_ijk"])
        assert embolus["centroid_lps_mm"] == pytest.approx(expected)
    assert (box["peak_heat"], box["peak_ijk"]) == (0.7, (4, 3, 2))
    assert (dot["peak_heat"], dot["peak_ijk"]) == (0.2, (7, 6, 5))


def test_label_maps_keep_their_labels_and_heat_is_optional(an_emboli_mask, an_oblique_geometry):
    labels = an_emboli_mask.astype(np.int16) * 7
    labels[5, 6, 7] = 3
    emboli = describe_emboli(labels, None, an_oblique_geometry)
    assert [(e["label"], e["voxels"]) for e in emboli] == [(3, 1), (7, 16)]
    assert all(e["peak_heat"] is None and e["peak_ijk"] is None for e in emboli)
    assert describe_emboli(np.zeros((6, 7, 8), bool), None, an_oblique_geometry) == []


def test_shapes_must_match_the_grid(an_emboli_mask, an_oblique_geometry):
    with pytest.raises(ValueError, match=r"mask shape \(7, 8\) does not match grid \(Z, Y, X\) \(6, 7, 8\)"):
        describe_emboli(an_emboli_mask[0], None, an_oblique_geometry)
    with pytest.raises(ValueError, match="heatmap shape"):
        describe_emboli(an_emboli_mask, np.zeros((6, 7, 9)), an_oblique_geometry)
    with pytest.raises(ValueError, match="bool or an integer label map, got float64"):
        describe_emboli(an_emboli_mask.astype(float), None, an_oblique_geometry)


def test_pseudomask_imports_without_torch():
    code = "import sys, PELabelUpLib.pseudomask\nassert 'torch' not in sys.modules, 'torch loaded'\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr


def test_emboli_are_counted_in_words():
    assert [emboli_count(n) for n in (0, 1, 2)] == ["0 emboli", "1 embolus", "2 emboli"]
