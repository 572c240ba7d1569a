"""Voxel overlap between a predicted and a reference mask."""

from __future__ import annotations

import numpy as np

from ._grid import check_pair


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice coefficient ``2 |P & T| / (|P| + |T|)`` of two masks (nonzero = inside), any equal shape.

    Both empty gives 1.0: a correct "no embolus" answer on a negative case is a perfect match.
    """
    check_pair(pred, truth)
    p = np.asarray(pred) != 0
    t = np.asarray(truth) != 0
    total = int(p.sum()) + int(t.sum())
    if total == 0:
        return 1.0
    return float(2.0 * np.logical_and(p, t).sum() / total)
