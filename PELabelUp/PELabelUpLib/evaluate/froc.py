"""Free-response ROC: lesion sensitivity against mean false positives per scan, over score thresholds.

Each predicted component carries a score (e.g. its peak heat). At threshold ``t`` the components with
score ``>= t`` are kept; a reference embolus (26-connected component of the truth) is detected when a
kept component overlaps it, and a kept component that overlaps no embolus is a false positive -- the
definitions of :mod:`PELabelUpLib.evaluate.detection`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from ._grid import check_pair, label_components


@dataclass(frozen=True)
class FrocCase:
    """One scan reduced to what FROC needs.

    Attributes:
        lesion_scores: per reference embolus, the best score among the components overlapping it
            (``-inf``: none does, never detected).
        fp_scores: scores of the components that overlap no embolus.
    """

    lesion_scores: np.ndarray
    fp_scores: np.ndarray


class FrocCurve(NamedTuple):
    """Per threshold (in the order given): lesion sensitivity and mean false positives per scan."""

    thresholds: np.ndarray
    sensitivity: np.ndarray
    mean_fp_per_scan: np.ndarray


def froc_case(pred_labels: np.ndarray, scores: Mapping[int, float], truth_mask: np.ndarray, *,
              truth_components: tuple[np.ndarray, int] | None = None) -> FrocCase:
    """Reduce one scan: ``pred_labels`` integer components (0 background, each label one finding),
    ``scores`` label -> score for every label present, ``truth_mask`` the reference (nonzero inside).
    ``truth_components``: :func:`label_components` of ``truth_mask`` when the caller has it already."""
    check_pair(pred_labels, truth_mask, ("pred_labels", "truth_mask"))
    pred = np.asarray(pred_labels)
    if not np.issubdtype(pred.dtype, np.integer):
        raise ValueError(f"pred_labels must be an integer label map, got {pred.dtype}")
    ids = [int(i) for i in np.unique(pred) if i > 0]
    missing = [i for i in ids if i not in scores]
    if missing:
        raise ValueError(f"no score for predicted component(s) {missing}")
    truth_labels, n_truth = label_components(truth_mask) if truth_components is None else truth_components
    lesion_scores = np.full(n_truth, -np.inf)
    fp_scores = []
    both = (truth_labels > 0) & (pred > 0)
    pairs = np.zeros((0, 2), dtype=np.int64)
    if both.any():
        pairs = np.unique(np.stack([truth_labels[both], pred[both]], axis=1), axis=0)
    for i in ids:
        score = float(scores[i])
        if not np.isfinite(score):
            raise ValueError(f"score of component {i} must be finite, got {score}")
        hit = pairs[pairs[:, 1] == i, 0].astype(int)
        if hit.size == 0:
            fp_scores.append(score)
        for t in hit:
            lesion_scores[t - 1] = max(lesion_scores[t - 1], score)
    return FrocCase(lesion_scores=lesion_scores, fp_scores=np.asarray(fp_scores, dtype=float))


def froc(cases: Sequence[FrocCase], thresholds: ArrayLike | None = None) -> FrocCurve:
    """Sensitivity (detected emboli / all emboli, pooled over scans) and mean FP per scan at each threshold.

    ``thresholds=None`` uses every distinct score, descending. Raises ``ValueError`` without any case or
    without any reference embolus.
    """
    if not cases:
        raise ValueError("froc needs at least one case")
    lesion_scores = np.concatenate([c.lesion_scores for c in cases])
    fp_scores = np.concatenate([c.fp_scores for c in cases])
    if lesion_scores.size == 0:
        raise ValueError("froc needs at least one reference embolus over all cases")
    if thresholds is None:
        every = np.concatenate([lesion_scores[np.isfinite(lesion_scores)], fp_scores])
        thresholds = np.unique(every)[::-1]
    t = np.asarray(thresholds, dtype=float).ravel()
    if np.isnan(t).any():
        raise ValueError("thresholds must not be NaN")
    sensitivity = (lesion_scores[None, :] >= t[:, None]).mean(axis=1)
    mean_fp = (fp_scores[None, :] >= t[:, None]).sum(axis=1) / len(cases)
    return FrocCurve(thresholds=t, sensitivity=sensitivity, mean_fp_per_scan=mean_fp)


def sensitivity_at_fp(curve: FrocCurve, fp_per_scan: ArrayLike) -> np.ndarray:
    """Best sensitivity reached with at most each given mean FP per scan (0 where no threshold qualifies)."""
    limits = np.asarray(fp_per_scan, dtype=float)
    allowed = curve.mean_fp_per_scan[None, :] <= limits.ravel()[:, None]
    best = np.where(allowed, curve.sensitivity[None, :], 0.0).max(axis=1, initial=0.0)
    return best.reshape(limits.shape)
