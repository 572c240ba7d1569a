"""FROC from per-component scores: a hand-counted case and monotonicity."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from PELabelUpLib.evaluate import FrocCase, froc, froc_case, sensitivity_at_fp


def two_hand_scans() -> list[FrocCase]:
    """Scan 1: emboli L1, L2; findings on L1 (0.9), on L2 (0.4), and a false positive (0.7).
    Scan 2: embolus L3; a false positive (0.8) and two findings on L3 (0.6 and 0.3)."""
    truth1 = np.zeros((3, 10, 10), dtype=bool)
    truth1[1, 1:3, 1:3] = True  # L1
    truth1[1, 6:8, 6:8] = True  # L2
    pred1 = np.zeros((3, 10, 10), dtype=np.int32)
    pred1[1, 2, 2] = 5  # on L1
    pred1[1, 7, 7:9] = 9  # on L2 (one voxel over the edge)
    pred1[2, 4, 0] = 2  # false positive
    truth2 = np.zeros((3, 10, 10), dtype=bool)
    truth2[0, 4:7, 4:7] = True  # L3
    pred2 = np.zeros((3, 10, 10), dtype=np.int32)
    pred2[2, 9, 9] = 1  # false positive
    pred2[0, 4, 4] = 2
    pred2[0, 6, 6] = 3
    return [
        froc_case(pred1, {5: 0.9, 9: 0.4, 2: 0.7}, truth1),
        froc_case(pred2, {1: 0.8, 2: 0.6, 3: 0.3}, truth2),
    ]


def test_hand_counted_curve():
    cases = two_hand_scans()
    np.testing.assert_array_equal(cases[0].lesion_scores, [0.9, 0.4])
    np.testing.assert_array_equal(cases[1].lesion_scores, [0.6])  # best of its two findings
    curve = froc(cases, [0.95, 0.85, 0.75, 0.65, 0.5, 0.35, 0.0])
    # emboli scores 0.9, 0.4, 0.6 (3 emboli); false-positive scores 0.7, 0.8 (2 scans)
    np.testing.assert_allclose(curve.sensitivity, [0, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 1, 1])
    np.testing.assert_allclose(curve.mean_fp_per_scan, [0, 0, 0.5, 1, 1, 1, 1])
    np.testing.assert_allclose(sensitivity_at_fp(curve, [0.0, 0.5, 1.0]), [1 / 3, 1 / 3, 1.0])


def test_default_thresholds_are_the_distinct_scores():
    curve = froc(two_hand_scans())
    # 0.3 is not a threshold: that finding is on L3, whose score is 0.6
    np.testing.assert_array_equal(curve.thresholds, [0.9, 0.8, 0.7, 0.6, 0.4])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.lists(st.floats(0, 1) | st.just(-np.inf), max_size=4),
                          st.lists(st.floats(0, 1), max_size=4)), min_size=1, max_size=5),
       st.lists(st.floats(-0.5, 1.5), min_size=1, max_size=12))
def test_curve_is_monotonic_in_the_threshold(raw_cases, thresholds):
    cases = [FrocCase(np.asarray(lesions, float), np.asarray(fps, float)) for lesions, fps in raw_cases]
    if not sum(c.lesion_scores.size for c in cases):
        return
    curve = froc(cases, sorted(thresholds))
    assert (np.diff(curve.sensitivity) <= 0).all()
    assert (np.diff(curve.mean_fp_per_scan) <= 0).all()
    assert ((curve.sensitivity >= 0) & (curve.sensitivity <= 1)).all()


def test_bad_inputs_fail_fast():
    truth = np.zeros((2, 3, 3), dtype=bool)
    truth[0, 0, 0] = True
    pred = np.zeros((2, 3, 3), dtype=np.int32)
    pred[1, 1, 1] = 4
    with pytest.raises(ValueError, match=r"no score for predicted component\(s\) \[4\]"):
        froc_case(pred, {}, truth)
    with pytest.raises(ValueError, match="integer label map"):
        froc_case(pred.astype(float), {4: 1.0}, truth)
    with pytest.raises(ValueError, match="at least one reference embolus"):
        froc([froc_case(pred, {4: 1.0}, np.zeros_like(truth))])
    with pytest.raises(ValueError, match="at least one case"):
        froc([])


def test_given_truth_components_are_used_in_their_order():
    truth = np.zeros((3, 10, 10), dtype=bool)
    truth[1, 1:3, 1:3] = True
    truth[1, 6:8, 6:8] = True
    pred = np.zeros((3, 10, 10), dtype=np.int32)
    pred[1, 2, 2] = 1
    labels = np.zeros(truth.shape, dtype=np.int32)
    labels[1, 1:3, 1:3], labels[1, 6:8, 6:8] = 2, 1  # the reverse of label_components' order
    assert froc_case(pred, {1: 0.9}, truth).lesion_scores.tolist() == [0.9, -np.inf]
    assert froc_case(pred, {1: 0.9}, truth, truth_components=(labels, 2)).lesion_scores.tolist() == [-np.inf, 0.9]
