"""ROC analysis of scores against binary labels (slice- or study-level PE classification)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike


class RocCurve(NamedTuple):
    """Operating points, one per distinct score (descending) after a first ``(0, 0)`` at ``+inf``.

    A sample is called positive at threshold ``t`` when its score is ``>= t``.
    """

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray


def _check(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=float)
    if y.ndim != 1 or s.shape != y.shape:
        raise ValueError(f"labels and scores must be 1-D and of equal length, got {y.shape} and {s.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"labels must be 0/1 or bool, got values {np.unique(y)[:10]}")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite (found NaN or inf)")
    y = y.astype(bool)
    if y.all() or not y.any():
        raise ValueError(f"need both positive and negative labels, got {int(y.sum())} of {y.size} positive")
    return y, s


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values``; tied values share the mean of their ranks."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(values.size, dtype=float)
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], values.size]
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = 0.5 * (start + 1 + end)
    return ranks


def roc_auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic with average ranks for ties.

    Equals the probability that a random positive scores higher than a random negative, ties counting
    one half. Raises ``ValueError`` unless both classes are present and all scores are finite.
    """
    y, s = _check(labels, scores)
    ranks = average_ranks(s)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_curve(labels: ArrayLike, scores: ArrayLike) -> RocCurve:
    """False- and true-positive rates at every distinct score (see :class:`RocCurve`).

    The trapezoid area under ``(fpr, tpr)`` equals :func:`roc_auc`.
    """
    y, s = _check(labels, scores)
    thresholds = np.unique(s)[::-1]
    # samples with score >= t, counted per class, via sorted search
    pos_sorted, neg_sorted = np.sort(s[y]), np.sort(s[~y])
    tp = pos_sorted.size - np.searchsorted(pos_sorted, thresholds, side="left")
    fp = neg_sorted.size - np.searchsorted(neg_sorted, thresholds, side="left")
    return RocCurve(
        fpr=np.r_[0.0, fp / neg_sorted.size],
        tpr=np.r_[0.0, tp / pos_sorted.size],
        thresholds=np.r_[np.inf, thresholds],
    )
