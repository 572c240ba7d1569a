"""Evaluation of a whole cohort: every case's prediction against its ground truth, reduced to figures.

Per case (:func:`evaluate_case`; arrays ``(Z, Y, X)``, spacing in index order ``(x, y, z)`` mm):

* voxel Dice of the chosen mask (pseudo-mask or segmentation) against ``emboli != 0`` (positive studies);
* emboli = 26-connected components of the reference; findings = 26-connected components of the mask; an
  embolus is detected when a finding overlaps it, a finding that overlaps none is a false positive (the
  definitions of :func:`~PELabelUpLib.evaluate.lesion_detection`, counted here through
  :func:`~PELabelUpLib.evaluate.froc_case`); each finding is scored by its peak heat in ``heatmap.nii.gz``;
* pointing game on every positive axial slice (2-D argmax of the heatmap slice, in-plane distance in mm)
  and on the whole volume (3-D argmax), hit within ``tolerance_mm`` of a reference voxel;
* artery Dice when the prediction has ``arteries.nii.gz``, and how many missed emboli have no voxel in it
  (the chain looks for clot inside the territory only, so the artery model alone loses these).

The cohort figures (:func:`~PELabelUpLib.evaluate.summary.summarise`) pool these: study ROC of ``pe_probability`` against the study
label, slice ROC of the pooled ``slice_probabilities``, detection counts and FROC over every scan
(negatives contribute false positives). Each case is loaded once and reduced before the next is read, so
memory holds one case at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..pseudomask.selection import peaks_by_label
from ._grid import label_components
from .froc import FrocCase, froc_case
from .levels import found_by_level
from .overlap import dice
from .pointing import DEFAULT_TOLERANCE_MM, pointing_hits
from .predictions import (
    MASK_CHOICES,
    CohortCase,
    GroundTruth,
    MaskChoice,
    Prediction,
    prediction_folders,
    read_cohort,
    read_ground_truth,
    read_prediction,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaseResult:
    """The figures of one case (everything the cohort summary and the report need; no volumes).

    Attributes:
        case: the cohort row; ``prediction_dir`` the folder read.
        positive: study label; ``pe_probability`` the prediction's study probability.
        slice_labels, slice_probabilities: ``(Z,)`` per axial slice k.
        n_emboli, tp, fn, fp: reference components, detected, missed, false-positive findings.
        n_findings: components of the chosen mask.
        dice: voxel Dice of the mask (``None`` on a negative study).
        truth_voxels, pred_voxels: voxels of the reference and of the mask; ``voxel_mm3`` one voxel's volume.
        froc: lesion and false-positive scores (peak heat per finding).
        pointing_slice_hits, pointing_slices: hits and positive axial slices of the slice pointing game.
        pointing_study_hit: 1.0/0.0 for the 3-D pointing game on a positive study, ``None`` on a negative.
        artery_dice: Dice of the predicted artery territory, ``None`` without ``arteries.nii.gz``.
        fn_outside_territory: missed emboli without a single voxel in the predicted artery territory (the
            chain looks for clot inside the territory only), ``None`` without ``arteries.nii.gz``.
        found_by_level: ``{level: [found, total]}`` of the emboli whose level the ground truth names
            (:func:`~.levels.found_by_level`); empty when it names none.
        territory_source: ``model`` or ``file`` (an artery mask given to the analysis), from result.json.
    """

    case: CohortCase
    prediction_dir: Path
    positive: bool
    pe_probability: float
    slice_labels: np.ndarray
    slice_probabilities: np.ndarray
    n_emboli: int
    tp: int
    fn: int
    fp: int
    n_findings: int
    dice: float | None
    truth_voxels: int
    pred_voxels: int
    voxel_mm3: float
    froc: FrocCase
    pointing_slice_hits: int
    pointing_slices: int
    pointing_study_hit: float | None
    artery_dice: float | None
    fn_outside_territory: int | None = None
    found_by_level: dict[str, list[int]] = field(default_factory=dict)
    territory_source: str = "model"

    @property
    def case_id(self) -> str:
        return self.case.case_id


@dataclass(frozen=True)
class CohortEvaluation:
    """A cohort's per-case results and what was evaluated.

    Attributes:
        cases: per-case results, in ``cohort.csv`` order (missing cases left out).
        cohort_dir, predictions_dir: the inputs.
        mask: the mask evaluated (``pseudomask`` or ``segmentation``).
        n_cohort_cases: cases listed in ``cohort.csv``.
        missing: case ids without a prediction (skipped with ``allow_missing``).
        extra_predictions: prediction folders that match no case (ignored).
        tolerance_mm: pointing-game tolerance, mm.
    """

    cases: tuple[CaseResult, ...]
    cohort_dir: Path
    predictions_dir: Path
    mask: MaskChoice
    n_cohort_cases: int
    missing: tuple[str, ...]
    extra_predictions: tuple[str, ...]
    tolerance_mm: float


def missed_outside_territory(truth_labels: np.ndarray, lesion_scores: np.ndarray, territory: np.ndarray) -> int:
    """How many missed emboli (``lesion_scores`` not finite, one per label of ``truth_labels``, the
    :func:`label_components` of the reference) have no voxel in ``territory``."""
    missed = np.flatnonzero(~np.isfinite(lesion_scores)) + 1
    if not missed.size:
        return 0
    reached = np.unique(truth_labels[(np.asarray(territory) != 0) & (truth_labels > 0)])
    return int(np.isin(missed, reached, invert=True).sum())


def evaluate_case(truth: GroundTruth, prediction: Prediction, *,
                  tolerance_mm: float = DEFAULT_TOLERANCE_MM) -> CaseResult:
    """Reduce one case to its figures (definitions in the module doc); components are labelled once each.

    Args:
        truth: the reference (``emboli`` ``(Z, Y, X)`` label map, grid in LPS mm).
        prediction: the case's outputs on the same grid.
        tolerance_mm: pointing-game hit distance, mm.
    """
    spacing_xyz = tuple(float(s) for s in truth.geometry.spacing_mm)
    truth_mask = truth.emboli != 0
    mask = prediction.mask
    pred_labels, n_findings = label_components(mask)
    scores = peaks_by_label(pred_labels, n_findings, prediction.heatmap)
    # froc_case matches findings to emboli with lesion_detection's definitions: an embolus is detected when
    # its score is finite (some finding overlaps it); each unmatched finding is one false positive
    truth_components = label_components(truth_mask)
    froc = froc_case(pred_labels, {i + 1: float(v) for i, v in enumerate(scores)}, truth_mask,
                     truth_components=truth_components)
    tp = int(np.isfinite(froc.lesion_scores).sum())
    positive_slices = np.flatnonzero(truth_mask.reshape(truth_mask.shape[0], -1).any(axis=1))
    slice_hits = pointing_hits((prediction.heatmap[k] for k in positive_slices),
                               (truth_mask[k] for k in positive_slices),
                               spacing_mm=spacing_xyz[:2], tolerance_mm=tolerance_mm)
    study_hit = None
    if truth_mask.any():
        study_hit = float(pointing_hits([prediction.heatmap], [truth_mask], spacing_mm=spacing_xyz,
                                        tolerance_mm=tolerance_mm)[0])
    artery_dice = fn_outside = None
    if prediction.arteries is not None:
        artery_dice = dice(prediction.arteries, truth.arteries())
        fn_outside = missed_outside_territory(truth_components[0], froc.lesion_scores, prediction.arteries)
    return CaseResult(
        case=truth.case, prediction_dir=prediction.folder, positive=truth.positive,
        pe_probability=prediction.pe_probability, slice_labels=truth.slice_labels,
        slice_probabilities=prediction.slice_probabilities, n_emboli=int(froc.lesion_scores.size),
        tp=tp, fn=int(froc.lesion_scores.size) - tp, fp=int(froc.fp_scores.size), n_findings=n_findings,
        dice=dice(mask, truth_mask) if truth.positive else None,
        truth_voxels=int(truth_mask.sum()), pred_voxels=int(mask.sum()),
        voxel_mm3=float(np.prod(spacing_xyz)), froc=froc,
        pointing_slice_hits=int(np.nansum(slice_hits)), pointing_slices=int(positive_slices.size),
        pointing_study_hit=study_hit, artery_dice=artery_dice, fn_outside_territory=fn_outside,
        found_by_level=found_by_level(mask, truth.emboli, truth.levels) if truth.levels else {},
        territory_source=prediction.territory_source,
    )


def evaluate_one(case: CohortCase, prediction_dir: Path, mask: MaskChoice, tolerance_mm: float) -> CaseResult:
    """Load one case's ground truth and prediction and reduce them (the unit of work; picklable)."""
    truth = read_ground_truth(case)
    prediction = read_prediction(prediction_dir, truth, mask=mask)
    return evaluate_case(truth, prediction, tolerance_mm=tolerance_mm)


def evaluate_cohort(
    cohort_dir: str | Path,
    predictions_dir: str | Path,
    *,
    mask: MaskChoice = "pseudomask",
    allow_missing: bool = False,
    tolerance_mm: float = DEFAULT_TOLERANCE_MM,
    workers: int = 1,
    on_case_done: Callable[[CaseResult], None] | None = None,
) -> CohortEvaluation:
    """Evaluate every case of ``cohort_dir`` against ``predictions_dir/<case_id>/``.

    Args:
        cohort_dir: a cohort written by ``pelabelup synth`` (NIfTI or RSPECT layout).
        predictions_dir: one folder per case (contract in :mod:`.predictions`).
        mask: which predicted mask is scored: ``"pseudomask"`` or ``"segmentation"``.
        allow_missing: skip cases without a prediction folder instead of failing.
        tolerance_mm: pointing-game tolerance, mm (>= 0).
        workers: processes reading and reducing cases (1: in this process).
        on_case_done: called with each case's result as it finishes (progress bars).

    Raises:
        InputError: missing predictions (listing the case ids), an unreadable file, a prediction on another
            grid, a malformed ``result.json`` -- one line naming the file.
    """
    if mask not in MASK_CHOICES:
        raise ValueError(f"mask must be one of {MASK_CHOICES}, got {mask!r}")
    if not np.isfinite(tolerance_mm) or tolerance_mm < 0:
        raise ValueError(f"tolerance_mm must be >= 0, got {tolerance_mm}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    cases = read_cohort(cohort_dir)
    found, missing, extra = prediction_folders(cases, predictions_dir)
    if missing and not allow_missing:
        shown = ", ".join(missing[:20]) + (f", ... ({len(missing) - 20} more)" if len(missing) > 20 else "")
        raise InputError(predictions_dir, f"no prediction folder (with result.json) for {len(missing)} of "
                                          f"{len(cases)} cases: {shown} (--allow-missing skips them)")
    if missing:
        log.warning("skipping %d case(s) without predictions: %s", len(missing), ", ".join(missing))
    if extra:
        log.warning("ignoring %d prediction folder(s) that match no case: %s", len(extra), ", ".join(extra[:10]))
    todo = [case for case in cases if case.case_id in found]
    if not todo:
        raise InputError(predictions_dir, "no case to evaluate: none of the cohort's cases has a prediction")
    results = _run(todo, found, mask, float(tolerance_mm), workers, on_case_done)
    return CohortEvaluation(cases=tuple(results), cohort_dir=Path(cohort_dir), predictions_dir=Path(predictions_dir),
                            mask=mask, n_cohort_cases=len(cases), missing=tuple(missing),
                            extra_predictions=tuple(extra), tolerance_mm=float(tolerance_mm))


def _run(todo: Sequence[CohortCase], found: dict[str, Path], mask: MaskChoice, tolerance_mm: float, workers: int,
         on_case_done: Callable[[CaseResult], None] | None) -> list[CaseResult]:
    results: list[CaseResult] = []
    if workers == 1 or len(todo) == 1:
        for case in todo:
            results.append(evaluate_one(case, found[case.case_id], mask, tolerance_mm))
            if on_case_done:
                on_case_done(results[-1])
        return results
    with ProcessPoolExecutor(max_workers=min(workers, len(todo))) as pool:
        futures = [pool.submit(evaluate_one, case, found[case.case_id], mask, tolerance_mm) for case in todo]
        for future in futures:  # in cohort order; the first error is raised as is
            results.append(future.result())
            if on_case_done:
                on_case_done(results[-1])
    return results
