"""Lesion-level detection: which reference emboli a predicted mask finds, and its false positives.

Definitions (3-D masks ``(Z, Y, X)``; 2-D ``(Y, X)`` works the same with 8-connectivity):

* reference emboli = 26-connected components of ``truth_mask != 0`` (touching emboli count as one);
* predicted findings = 26-connected components of ``pred_mask != 0``;
* an embolus is **detected** (TP) when at least one predicted voxel lies in it, else it is missed (FN);
* a finding that overlaps no embolus is a **false positive** (FP). One finding may detect several emboli.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ._grid import check_pair, label_components, spacing_for_array


@dataclass(frozen=True)
class LesionMatch:
    """One reference embolus: its component label, size, whether it was found and by which findings."""

    label: int
    voxels: int
    volume_mm3: float
    detected: bool
    overlap_voxels: int
    matched_findings: tuple[int, ...]


@dataclass(frozen=True)
class FindingMatch:
    """One predicted component: its label, size and the emboli it overlaps (empty: false positive)."""

    label: int
    voxels: int
    volume_mm3: float
    matched_lesions: tuple[int, ...]


@dataclass(frozen=True)
class LesionDetection:
    """Counts and per-component matches of :func:`lesion_detection`."""

    tp: int
    fn: int
    fp: int
    lesions: tuple[LesionMatch, ...]
    findings: tuple[FindingMatch, ...]

    @property
    def sensitivity(self) -> float:
        """``tp / (tp + fn)``; 1.0 when there is no embolus to find."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        return detection_f1(self.tp, self.fp, self.fn)


def detection_f1(tp: int, fp: int, fn: int) -> float:
    """``2 TP / (2 TP + FP + FN)`` (TP and FN count emboli, FP counts findings); 1.0 when all are 0."""
    if min(tp, fp, fn) < 0:
        raise ValueError(f"counts must be >= 0, got tp={tp}, fp={fp}, fn={fn}")
    denominator = 2 * tp + fp + fn
    return 1.0 if denominator == 0 else 2.0 * tp / denominator


def _pairs(truth_labels: np.ndarray, pred_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (truth label, pred label) pairs that share voxels, and the shared voxel counts."""
    both = (truth_labels > 0) & (pred_labels > 0)
    pair_ids = np.stack([truth_labels[both], pred_labels[both]], axis=1)
    if pair_ids.size == 0:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.int64)
    unique, counts = np.unique(pair_ids, axis=0, return_counts=True)
    return unique, counts


def lesion_detection(
    pred_mask: np.ndarray, truth_mask: np.ndarray, spacing_mm: Sequence[float] | None = None
) -> LesionDetection:
    """Match predicted components to reference emboli (definitions in the module doc).

    Args:
        pred_mask, truth_mask: same-shape masks, nonzero = inside (label maps are binarised first).
        spacing_mm: voxel size in index order ``(x, y, z)`` (``Geometry.spacing_mm``), mm, for the volumes;
            ``None``: 1 mm.
    """
    check_pair(pred_mask, truth_mask, ("pred_mask", "truth_mask"))
    truth_labels, n_truth = label_components(truth_mask)
    pred_labels, n_pred = label_components(pred_mask)
    voxel_mm3 = float(np.prod(spacing_for_array(spacing_mm, truth_labels.ndim)))
    truth_sizes = np.bincount(truth_labels.ravel(), minlength=n_truth + 1)
    pred_sizes = np.bincount(pred_labels.ravel(), minlength=n_pred + 1)
    pairs, shared = _pairs(truth_labels, pred_labels)
    lesions = []
    for t in range(1, n_truth + 1):
        rows = pairs[:, 0] == t
        findings = tuple(int(p) for p in pairs[rows, 1])
        lesions.append(LesionMatch(t, int(truth_sizes[t]), float(truth_sizes[t] * voxel_mm3), bool(findings),
                                   int(shared[rows].sum()), findings))
    finds = []
    for p in range(1, n_pred + 1):
        matched = tuple(int(t) for t in pairs[pairs[:, 1] == p, 0])
        finds.append(FindingMatch(p, int(pred_sizes[p]), float(pred_sizes[p] * voxel_mm3), matched))
    tp = sum(lesion.detected for lesion in lesions)
    fp = sum(not f.matched_lesions for f in finds)
    return LesionDetection(tp=tp, fn=n_truth - tp, fp=fp, lesions=tuple(lesions), findings=tuple(finds))
