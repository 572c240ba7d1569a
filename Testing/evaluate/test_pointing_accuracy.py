"""Pointing accuracy: argmax of the heatmap on an embolus, within a tolerance in mm."""

from __future__ import annotations

import numpy as np
import pytest

from PELabelUpLib.evaluate import pointing_accuracy, pointing_hits


def slice_with_peak(peak_yx: tuple[int, int], shape=(9, 9)) -> np.ndarray:
    heat = np.linspace(0, 0.5, np.prod(shape)).reshape(shape)
    heat[peak_yx] = 1.0
    return heat


@pytest.fixture
def three_slices() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Slice 0: peak on the embolus. Slice 1: peak 3 px right of it. Slice 2: negative (skipped)."""
    truth = np.zeros((9, 9), dtype=bool)
    truth[4, 2] = True
    return (
        [slice_with_peak((4, 2)), slice_with_peak((4, 5)), slice_with_peak((0, 0))],
        [truth, truth, np.zeros((9, 9), dtype=bool)],
    )


@pytest.mark.parametrize(("tolerance_mm", "expected"), [(0.0, 0.5), (1.0, 0.5), (1.5, 1.0), (5.0, 1.0)])
def test_tolerance_dilates_the_emboli(three_slices, tolerance_mm, expected):
    heatmaps, truths = three_slices
    accuracy = pointing_accuracy(heatmaps, truths, spacing_mm=(0.5, 0.5), tolerance_mm=tolerance_mm)
    assert accuracy == expected  # 3 px * 0.5 mm = 1.5 mm off


def test_negative_slices_are_skipped(three_slices):
    hits = pointing_hits(*three_slices, tolerance_mm=0.0)
    np.testing.assert_array_equal(hits[:2], [1.0, 0.0])
    assert np.isnan(hits[2])


def test_spacing_is_in_x_y_order():
    """x spacing 0.5 mm, y spacing 3 mm: 2 px off in x is 1 mm (hit), 2 px off in y is 6 mm (miss)."""
    truth = np.zeros((9, 9), dtype=bool)
    truth[4, 4] = True
    hits = pointing_hits([slice_with_peak((4, 6)), slice_with_peak((6, 4))], [truth, truth],
                         spacing_mm=(0.5, 3.0), tolerance_mm=5.0)
    np.testing.assert_array_equal(hits, [1.0, 0.0])


def test_volumes_and_stacks():
    heat = np.zeros((2, 4, 5, 6))
    truth = np.zeros((2, 4, 5, 6), dtype=bool)
    truth[0, 1, 1, 1] = truth[1, 3, 4, 5] = True
    heat[0, 1, 1, 1] = heat[1, 0, 0, 0] = 1.0
    hits = pointing_hits(heat, truth, spacing_mm=(1, 1, 1), tolerance_mm=2.0)
    np.testing.assert_array_equal(hits, [1.0, 0.0])


def test_ties_and_nan():
    truth = np.zeros((3, 3), dtype=bool)
    truth[2, 2] = True
    flat = np.ones((3, 3))  # every voxel is maximal: the first, (0, 0), is the argmax -> miss
    with_nan = np.full((3, 3), np.nan)
    with_nan[2, 2] = 0.1  # NaN is cold
    hits = pointing_hits([flat, with_nan, np.full((3, 3), np.nan)], [truth] * 3, tolerance_mm=0.0)
    np.testing.assert_array_equal(hits, [0.0, 1.0, 0.0])


def test_bad_inputs_fail_fast(three_slices):
    heatmaps, truths = three_slices
    with pytest.raises(ValueError, match="no positive sample among 1"):
        pointing_accuracy(heatmaps[2:], truths[2:])
    with pytest.raises(ValueError, match="tolerance_mm must be >= 0, got -1"):
        pointing_accuracy(heatmaps, truths, tolerance_mm=-1.0)
    with pytest.raises(ValueError, match="zip"):
        pointing_accuracy(heatmaps, truths[:2])
    message = r"heatmap 0 shape \(9, 9\) differs from truth mask 0 shape \(9, 8\)"
    with pytest.raises(ValueError, match=message):
        pointing_accuracy(heatmaps[:1], [np.ones((9, 8))])
