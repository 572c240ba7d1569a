"""Pseudo-masks from explanations (numpy/scipy only; importable without torch).

Pipeline: :func:`candidate_clot_voxels` (HU rule inside the eroded artery territory) -> :func:`components`
-> :func:`select_components` (hysteresis on the heatmap picks components) -> :func:`iterative_pseudomask`
(iExplain rounds) -> :func:`describe_emboli`.
"""

from __future__ import annotations

from .candidates import (
    candidate_clot_voxels,
    clot_threshold_hu,
    components,
    erode_territory,
    lumen_median_hu,
)
from .describe import describe_emboli, emboli_count
from .hysteresis import hysteresis
from .iterative import IterativeResult, RoundRecord, iterative_pseudomask, replace_with
from .selection import Selection, component_peaks, select_components

__all__ = [
    "IterativeResult",
    "RoundRecord",
    "Selection",
    "candidate_clot_voxels",
    "clot_threshold_hu",
    "component_peaks",
    "components",
    "describe_emboli",
    "emboli_count",
    "erode_territory",
    "hysteresis",
    "iterative_pseudomask",
    "lumen_median_hu",
    "replace_with",
    "select_components",
]
