"""Dice and lesion-level detection on tiny arrays whose TP / FN / FP can be counted by eye."""

from __future__ import annotations

import numpy as np
import pytest

from PELabelUpLib.evaluate import detection_f1, dice, lesion_detection


@pytest.mark.parametrize(
    ("pred_voxels", "truth_voxels", "expected"),
    [
        ([0, 1, 2, 3], [1, 2, 3, 4, 5, 6], 2 * 3 / (4 + 6)),
        ([0, 1], [0, 1], 1.0),
        ([0, 1], [], 0.0),
        ([], [], 1.0),  # both empty: a correct negative
    ],
)
def test_dice_known_values(pred_voxels, truth_voxels, expected):
    pred = np.zeros((2, 4, 4), dtype=bool)
    truth = np.zeros((2, 4, 4), dtype=np.uint8)
    pred.ravel()[pred_voxels] = True
    truth.ravel()[truth_voxels] = 3  # label maps count as masks
    assert dice(pred, truth) == pytest.approx(expected)


def test_dice_needs_equal_shapes():
    with pytest.raises(ValueError, match=r"pred shape \(2, 3\) differs from truth shape \(3, 2\)"):
        dice(np.zeros((2, 3)), np.zeros((3, 2)))


@pytest.fixture
def a_scored_pair() -> tuple[np.ndarray, np.ndarray]:
    """``(Z, Y, X) = (5, 8, 8)``.

    Reference emboli: A = 2x2 patch at z=1 (4 voxels); B = one voxel at (3, 6, 6); C = two voxels touching
    by a corner, (1, 6, 1) and (2, 7, 2) -- one embolus under 26-connectivity.
    Prediction: P grazes A at one voxel (1, 2, 2); Q sits where there is nothing (false positive);
    R covers C's voxel (2, 7, 2). B is missed.  =>  TP 2 (A, C), FN 1 (B), FP 1 (Q).
    """
    truth = np.zeros((5, 8, 8), dtype=np.uint8)
    truth[1, 1:3, 1:3] = 1
    truth[3, 6, 6] = 2
    truth[1, 6, 1] = truth[2, 7, 2] = 3
    pred = np.zeros((5, 8, 8), dtype=bool)
    pred[1, 2:4, 2:4] = True
    pred[4, 0:2, 5:7] = True
    pred[2, 7, 2] = True
    return pred, truth


def test_counts_and_matches_by_eye(a_scored_pair):
    pred, truth = a_scored_pair
    result = lesion_detection(pred, truth, spacing_mm=(0.5, 0.5, 2.0))
    assert (result.tp, result.fn, result.fp) == (2, 1, 1)
    lesions = sorted((m.voxels, m.detected, m.overlap_voxels, len(m.matched_findings))
                     for m in result.lesions)
    assert lesions == [(1, False, 0, 0), (2, True, 1, 1), (4, True, 1, 1)]
    assert sorted(m.volume_mm3 for m in result.lesions) == [0.5, 1.0, 2.0]
    findings = sorted((f.voxels, len(f.matched_lesions)) for f in result.findings)
    assert findings == [(1, 1), (4, 0), (4, 1)]
    assert result.sensitivity == pytest.approx(2 / 3)
    assert result.f1 == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))


def test_one_finding_can_detect_two_emboli():
    truth = np.zeros((1, 3, 7), dtype=bool)
    truth[0, 1, 1] = truth[0, 1, 5] = True
    pred = np.zeros_like(truth)
    pred[0, 1, 0:7] = True
    result = lesion_detection(pred, truth)
    assert (result.tp, result.fn, result.fp) == (2, 0, 0)
    assert result.findings[0].matched_lesions == (1, 2)


def test_negative_case_with_no_prediction_is_perfect():
    result = lesion_detection(np.zeros((3, 4, 4)), np.zeros((3, 4, 4)))
    assert (result.tp, result.fn, result.fp, result.sensitivity, result.f1) == (0, 0, 0, 1.0, 1.0)


def test_2d_slices_use_8_connectivity():
    truth = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0]])  # diagonal pair: one embolus
    pred = np.array([[0, 0, 0], [0, 1, 0], [0, 0, 1]])  # diagonal pair: one finding, overlapping it
    result = lesion_detection(pred, truth)
    assert (result.tp, result.fn, result.fp) == (1, 0, 0)


@pytest.mark.parametrize(("tp", "fp", "fn", "expected"), [(3, 1, 2, 6 / 9), (0, 2, 1, 0.0), (0, 0, 0, 1.0)])
def test_detection_f1(tp, fp, fn, expected):
    assert detection_f1(tp, fp, fn) == pytest.approx(expected)


def test_detection_f1_refuses_negative_counts():
    with pytest.raises(ValueError, match="counts must be >= 0, got tp=1, fp=-1, fn=0"):
        detection_f1(1, -1, 0)
