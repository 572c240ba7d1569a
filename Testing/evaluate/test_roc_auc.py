"""ROC AUC (Mann-Whitney with average ranks) against a naive O(n^2) pairs count, and the ROC curve."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from PELabelUpLib.evaluate import average_ranks, roc_auc, roc_curve


def auc_by_pairs(labels, scores) -> float:
    """Every (positive, negative) pair: 1 when the positive scores higher, 1/2 on a tie."""
    positives = [s for y, s in zip(labels, scores, strict=True) if y]
    negatives = [s for y, s in zip(labels, scores, strict=True) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


LABELS = [1, 0, 1, 0, 1, 0]
SCORES = [0.9, 0.8, 0.8, 0.3, 0.5, 0.5]
# positives 0.9, 0.8, 0.5 vs negatives 0.8, 0.3, 0.5:
#   0.9 beats all three (3); 0.8 ties 0.8, beats 0.3 and 0.5 (2.5);
#   0.5 loses to 0.8, beats 0.3, ties 0.5 (1.5)
HAND_AUC = (3 + 2.5 + 1.5) / 9


def test_small_case_counted_by_hand():
    assert auc_by_pairs(LABELS, SCORES) == pytest.approx(HAND_AUC)
    assert roc_auc(LABELS, SCORES) == pytest.approx(HAND_AUC)


@pytest.mark.parametrize(
    ("scores", "expected"),
    [([0.1, 0.2, 0.8, 0.9], 1.0), ([0.9, 0.8, 0.2, 0.1], 0.0), ([0.5, 0.5, 0.5, 0.5], 0.5)],
)
def test_perfect_reversed_and_uninformative_scores(scores, expected):
    assert roc_auc([0, 0, 1, 1], scores) == expected


def test_average_ranks_share_ties():
    ranks = average_ranks(np.array([3.0, 1.0, 3.0, 2.0, 3.0]))
    np.testing.assert_array_equal(ranks, [4.0, 1.0, 4.0, 2.0, 4.0])


def test_curve_of_the_hand_case():
    curve = roc_curve(LABELS, SCORES)
    np.testing.assert_array_equal(curve.thresholds, [np.inf, 0.9, 0.8, 0.5, 0.3])
    np.testing.assert_allclose(curve.tpr, [0, 1 / 3, 2 / 3, 1, 1])
    np.testing.assert_allclose(curve.fpr, [0, 0, 1 / 3, 2 / 3, 1])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 6)), min_size=2, max_size=40))
def test_matches_the_pairs_count_and_the_curve_area(samples):
    labels = [y for y, _ in samples]
    scores = [s / 2 for _, s in samples]  # few distinct values: many ties
    assume(any(labels) and not all(labels))
    auc = roc_auc(labels, scores)
    assert auc == pytest.approx(auc_by_pairs(labels, scores))
    curve = roc_curve(labels, scores)
    assert np.trapezoid(curve.tpr, curve.fpr) == pytest.approx(auc)
    assert (np.diff(curve.fpr) >= 0).all()
    assert (np.diff(curve.tpr) >= 0).all()
    assert curve.fpr[-1] == curve.tpr[-1] == 1.0


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        ([1, 1, 1], [0.1, 0.2, 0.3], "need both positive and negative labels, got 3 of 3 positive"),
        ([0, 1], [0.1, float("nan")], "scores must be finite"),
        ([0, 1, 1], [0.1, 0.2], "equal length"),
        ([0, 2], [0.1, 0.2], "labels must be 0/1 or bool"),
    ],
)
def test_bad_inputs_fail_fast(labels, scores, message):
    with pytest.raises(ValueError, match=message):
        roc_auc(labels, scores)


def test_evaluate_imports_without_torch():
    code = "import sys, PELabelUpLib.evaluate\nassert 'torch' not in sys.modules, 'torch loaded'\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
