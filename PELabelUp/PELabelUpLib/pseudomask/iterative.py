"""iExplain: explain, keep the candidate components the heatmap selects, hide them, explain again.

Each round explains the inputs with everything found so far replaced by a neutral value, so that the
classifier's next-strongest evidence shows. The loop is model-agnostic: it takes a callable
``explain_fn(masked_inputs) -> heatmap`` (wrap a model and an explainer, or anything else) and numpy
arrays only.

Stops when a round adds no new component, when the optional ``score_fn`` (e.g. the classifier's PE
probability on the masked inputs) falls below ``min_score``, or after ``max_rounds`` rounds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import ndimage

from ._grid import structure
from .selection import select_components

log = logging.getLogger(__name__)

StopReason = Literal["nothing_new", "max_rounds", "low_score", "no_candidates"]
MaskFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def replace_with(neutral_value: float) -> MaskFn:
    """A mask function: copy of ``inputs`` ``(..., *spatial)`` with ``inputs[..., found] = neutral_value``
    in every leading (channel) position; ``found`` is a bool ``spatial`` array."""

    def mask(inputs: np.ndarray, found: np.ndarray) -> np.ndarray:
        masked = np.array(inputs, copy=True)
        masked[..., found] = neutral_value
        return masked

    return mask


@dataclass(frozen=True)
class RoundRecord:
    """One round: ``index`` (1-based), candidate ids it added (hottest first), voxels added, the peak of
    its heatmap, and ``score_fn`` of its masked inputs (``None`` without ``score_fn``)."""

    index: int
    new_ids: tuple[int, ...]
    new_voxels: int
    heat_peak: float
    score: float | None = None


@dataclass
class IterativeResult:
    """Result of :func:`iterative_pseudomask`.

    Attributes:
        labels: ``int32`` ``spatial`` array, found components keep their candidate id, others 0.
        rounds: one record per round run.
        stop_reason: ``nothing_new``, ``max_rounds``, ``low_score`` or ``no_candidates``.
        found_in_round: candidate id -> round (1-based) that found it.
        component_heat: candidate id -> peak heat over the component in the round that found it.
        heat_max: voxel-wise maximum heat over all rounds (``float32``, zeros if none ran).
    """

    labels: np.ndarray
    rounds: list[RoundRecord] = field(default_factory=list)
    stop_reason: StopReason = "nothing_new"
    found_in_round: dict[int, int] = field(default_factory=dict)
    component_heat: dict[int, float] = field(default_factory=dict)
    heat_max: np.ndarray | None = None

    @property
    def mask(self) -> np.ndarray:
        """Union of the found components, bool."""
        return self.labels > 0


def iterative_pseudomask(
    explain_fn: Callable[[np.ndarray], np.ndarray],
    volume_inputs: np.ndarray,
    candidates: np.ndarray,
    *,
    low: float,
    high: float,
    max_rounds: int = 5,
    mask_fn: MaskFn | None = None,
    neutral_value: float = 0.0,
    mask_margin_voxels: int = 0,
    score_fn: Callable[[np.ndarray], float] | None = None,
    min_score: float = 0.5,
    connectivity: int | None = None,
) -> IterativeResult:
    """Run iExplain rounds until nothing new is found (see module doc).

    Args:
        explain_fn: masked inputs -> heatmap with the candidates' shape (``(Z, Y, X)`` or ``(Y, X)``).
        volume_inputs: what ``explain_fn`` takes, ``(..., *spatial)`` -- e.g. ``(Z, Y, X)`` windowed CT or
            ``(C, Z, Y, X)``; never modified.
        candidates: ``int`` candidate-component labels on the spatial grid (0 background).
        low, high: hysteresis thresholds of :func:`select_components`.
        max_rounds: at most this many explanations (>= 1).
        mask_fn: ``(inputs, found) -> masked inputs``; default :func:`replace_with` ``(neutral_value)``.
        neutral_value: value that hides found voxels (e.g. the windowed value of blood or of 0 HU).
        mask_margin_voxels: dilate the found region by this many voxels before hiding it.
        score_fn: optional masked inputs -> score; a round whose score is below ``min_score`` stops the
            loop before explaining (the classifier no longer sees PE).
        connectivity: of the hysteresis region.
    """
    candidates = np.asarray(candidates)
    spatial = candidates.shape
    if volume_inputs.shape[-len(spatial):] != spatial:
        raise ValueError(f"volume_inputs {volume_inputs.shape} must end with the candidates' shape {spatial}")
    if max_rounds < 1:
        raise ValueError(f"max_rounds must be >= 1, got {max_rounds}")
    if mask_margin_voxels < 0:
        raise ValueError(f"mask_margin_voxels must be >= 0, got {mask_margin_voxels}")
    mask_fn = replace_with(neutral_value) if mask_fn is None else mask_fn
    result = IterativeResult(labels=np.zeros(spatial, dtype=np.int32), heat_max=np.zeros(spatial, np.float32))
    if not (candidates > 0).any():
        result.stop_reason = "no_candidates"
        return result
    for index in range(1, max_rounds + 1):
        hidden = result.mask
        if mask_margin_voxels and hidden.any():
            hidden = ndimage.binary_dilation(hidden, structure(hidden.ndim), iterations=mask_margin_voxels)
        masked = mask_fn(volume_inputs, hidden) if hidden.any() else volume_inputs
        score = None if score_fn is None else float(score_fn(masked))
        if score is not None and score < min_score:
            log.info("iExplain round %d: score %.3f < %.3f, stop", index, score, min_score)
            result.stop_reason = "low_score"
            return result
        heat = np.asarray(explain_fn(masked), dtype=np.float32)
        if heat.shape != spatial:
            raise ValueError(f"explain_fn returned shape {heat.shape}, expected {spatial}")
        np.fmax(result.heat_max, heat, out=result.heat_max)
        selection = select_components(candidates, heat, low, high, connectivity=connectivity)
        new_ids = tuple(i for i in selection.kept_ids if i not in result.found_in_round)
        new_region = np.isin(candidates, new_ids)
        result.labels[new_region] = candidates[new_region]
        for i in new_ids:
            result.found_in_round[i] = index
            result.component_heat[i] = selection.peak_heat[i]
        heat_peak = float(np.nanmax(heat)) if np.isfinite(heat).any() else float("nan")
        result.rounds.append(RoundRecord(index, new_ids, int(new_region.sum()), heat_peak, score))
        log.info("iExplain round %d: %d new component(s), %d voxels", index, len(new_ids),
                 int(new_region.sum()))
        if not new_ids:
            result.stop_reason = "nothing_new"
            return result
    result.stop_reason = "max_rounds"
    return result
