"""The heatmap selects candidate components through hysteresis; components are kept whole."""

from __future__ import annotations

import numpy as np
import pytest

from PELabelUpLib.pseudomask import component_peaks, select_components
from PELabelUpLib.pseudomask.selection import peaks_by_label

LOW, HIGH = 0.3, 0.8


@pytest.fixture
def a_candidate_map() -> np.ndarray:
    """2-D candidate labels: A=1 (2x2), B=2 (2x2), C=3 (2x3), D=4 (2x3)."""
    labels = np.zeros((8, 12), dtype=np.int32)
    labels[1:3, 1:3] = 1
    labels[5:7, 1:3] = 2
    labels[1:3, 8:11] = 3
    labels[5:7, 8:11] = 4
    return labels


@pytest.fixture
def a_heatmap() -> np.ndarray:
    """A hot spot (0.9) *between* candidates whose warm tail (0.5) reaches A; a warm but seedless patch
    on B; a hot spot on C; nothing on D."""
    heat = np.zeros((8, 12))
    heat[1, 4] = 0.9  # seed outside every candidate
    heat[1, 3] = 0.5  # bridge
    heat[1, 2] = 0.5  # A's corner
    heat[5, 1] = 0.6  # B: above low, no seed
    heat[2, 9] = 0.95  # C's own peak
    return heat


def test_components_touched_by_the_hysteresis_region_are_kept_whole(a_candidate_map, a_heatmap):
    selection = select_components(a_candidate_map, a_heatmap, LOW, HIGH)
    assert selection.kept_ids == (3, 1)  # hottest first: C (0.95), then A (0.5)
    assert selection.peak_heat == {3: 0.95, 1: 0.5}
    expected = np.where(np.isin(a_candidate_map, [1, 3]), a_candidate_map, 0)
    np.testing.assert_array_equal(selection.labels, expected)
    np.testing.assert_array_equal(selection.mask, expected > 0)


def test_small_components_are_dropped(a_candidate_map, a_heatmap):
    selection = select_components(a_candidate_map, a_heatmap, LOW, HIGH, spacing_mm=(1.0, 1.0),
                                  min_volume_mm3=5.0)
    assert selection.kept_ids == (3,)  # A has 4 px = 4 mm2
    with pytest.raises(ValueError, match="min_volume_mm3 needs spacing_mm"):
        select_components(a_candidate_map, a_heatmap, LOW, HIGH, min_volume_mm3=5.0)


def test_cold_heatmap_selects_nothing(a_candidate_map):
    for heat in (np.zeros((8, 12)), np.full((8, 12), np.nan)):
        selection = select_components(a_candidate_map, heat, LOW, HIGH)
        assert selection.kept_ids == ()
        assert not selection.mask.any()


def test_component_peaks(a_candidate_map, a_heatmap):
    assert component_peaks(a_candidate_map, a_heatmap) == {1: 0.5, 2: 0.6, 3: 0.95, 4: 0.0}
    assert component_peaks(np.zeros((3, 3), dtype=int), np.ones((3, 3))) == {}


def test_peaks_ignore_nan_and_report_labels_without_voxels():
    labels = np.array([[1, 1, 0, 3], [0, 4, 4, 3]])
    heat = np.array([[0.2, np.nan, 9.0, np.nan], [0.1, 0.7, 0.3, np.nan]])
    np.testing.assert_array_equal(peaks_by_label(labels, 5, heat), [0.2, -np.inf, -np.inf, 0.7, -np.inf])
    assert component_peaks(labels, heat) == {1: 0.2, 3: -np.inf, 4: 0.7}


def test_bad_inputs_fail_fast(a_candidate_map, a_heatmap):
    with pytest.raises(ValueError, match="integer label array, got float64"):
        select_components(a_candidate_map.astype(float), a_heatmap, LOW, HIGH)
    with pytest.raises(ValueError, match="arrays must share one 2-D or 3-D shape"):
        select_components(a_candidate_map, a_heatmap[:, :5], LOW, HIGH)
