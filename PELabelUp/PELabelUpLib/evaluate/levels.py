"""Emboli found by level (central, lobar, segmental, subsegmental), where the ground truth names each embolus's level.

A phantom's ``case.json`` lists its emboli with the value each one has in ``emboli.nii.gz`` (``label``) and the
arterial level it lies at (``level``). Other ground truth (real or hybrid cases) may name none; its emboli then
count in the pooled figures only. An embolus is found when a predicted voxel lies on it (its voxels of that
value), the overlap rule of :func:`~PELabelUpLib.evaluate.lesion_detection` applied per labelled embolus.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

#: the levels from the trunk out; levels named otherwise are reported after these
LEVEL_ORDER = ("central", "lobar", "segmental", "subsegmental")


def emboli_levels(record: Mapping[str, Any]) -> dict[int, str]:
    """Label value -> level of the emboli a ``case.json`` record lists (entries without both are skipped)."""
    emboli = record.get("emboli") or []
    if not isinstance(emboli, list):
        return {}
    return {int(e["label"]): str(e["level"]) for e in emboli
            if isinstance(e, Mapping) and isinstance(e.get("label"), int) and isinstance(e.get("level"), str)}


def found_by_level(pred: np.ndarray, truth_labels: np.ndarray, levels: Mapping[int, str]) -> dict[str, list[int]]:
    """``{level: [found, total]}`` over the emboli of a label map (``levels``: each value's level; values absent
    from the map are not counted); ``pred`` nonzero = predicted, same shape."""
    truth_labels = np.asarray(truth_labels)
    hit = set(np.unique(truth_labels[(np.asarray(pred) != 0) & (truth_labels != 0)]).tolist())
    present = set(np.unique(truth_labels).tolist())
    out: dict[str, list[int]] = {}
    for value, level in sorted(levels.items()):
        if value in present:
            counts = out.setdefault(level, [0, 0])
            counts[0] += int(value in hit)
            counts[1] += 1
    return out


def sum_levels(per_case: Iterable[Mapping[str, Iterable[int]]]) -> dict[str, list[int]]:
    """``{level: [found, total]}`` summed over cases, levels in :data:`LEVEL_ORDER` (others after, by name)."""
    total: dict[str, list[int]] = {}
    for case in per_case:
        for level, (found, n) in case.items():
            counts = total.setdefault(level, [0, 0])
            counts[0] += int(found)
            counts[1] += int(n)
    rank = {level: i for i, level in enumerate(LEVEL_ORDER)}
    return dict(sorted(total.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))
