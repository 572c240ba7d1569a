"""Cohort figures from per-case results: JSON-ready dicts (plain floats, ``None`` where undefined).

A figure that a cohort cannot define (an AUC without negatives, a sensitivity without emboli) is ``None``
and the reason is added to ``notes``; nothing is silently reported as 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .cohort import CaseResult, CohortEvaluation
from .detection import detection_f1
from .froc import FrocCurve, froc, sensitivity_at_fp
from .levels import sum_levels
from .plots import plural
from .roc import RocCurve, roc_auc, roc_curve

FP_RATES_PER_SCAN = (0.5, 1.0, 2.0, 4.0)


def summarise(evaluation: CohortEvaluation) -> dict[str, Any]:
    """Every cohort figure (keys ``study``, ``slice``, ``segmentation``, ``detection``, ``froc``,
    ``pointing``, ``arteries``, ``notes``); see :mod:`.cohort` for the definitions."""
    cases = evaluation.cases
    notes: list[str] = []
    study = _roc_block("study", [c.positive for c in cases], [c.pe_probability for c in cases], notes)
    slice_block = _roc_block("slice", np.concatenate([c.slice_labels for c in cases]),
                             np.concatenate([c.slice_probabilities for c in cases]), notes)
    return {
        "study": study,
        "slice": slice_block,
        "segmentation": _segmentation(evaluation, notes),
        "detection": _detection(cases, notes),
        "froc": _froc(cases, notes),
        "pointing": _pointing(evaluation, notes),
        "arteries": _arteries(cases, notes),
        "notes": notes,
    }


def roc_of(labels: Any, scores: Any) -> RocCurve | None:
    """The ROC curve, or ``None`` when one class is absent."""
    y = np.asarray(labels, dtype=bool)
    if y.all() or not y.any():
        return None
    return roc_curve(y, np.asarray(scores, dtype=float))


def froc_of(cases: tuple[CaseResult, ...]) -> FrocCurve | None:
    """The FROC curve over the observed scores, or ``None`` when the cohort holds no embolus."""
    if not sum(c.n_emboli for c in cases):
        return None
    return froc([c.froc for c in cases])


def case_rows(evaluation: CohortEvaluation) -> list[dict[str, Any]]:
    """The per-case table: one JSON-ready dict a case, in cohort order."""
    rows = []
    for c in evaluation.cases:
        labels = c.slice_labels
        slice_auc = roc_auc(labels, c.slice_probabilities) if 0 < labels.sum() < labels.size else None
        rows.append({
            "case_id": c.case_id,
            "study_uid": c.case.study_uid or None,
            "positive": c.positive,
            "pe_probability": c.pe_probability,
            "n_slices": int(labels.size),
            "n_positive_slices": int(labels.sum()),
            "slice_auc": slice_auc,
            "n_emboli": c.n_emboli,
            "n_findings": c.n_findings,
            "tp": c.tp,
            "fn": c.fn,
            "fp": c.fp,
            "dice": c.dice,
            "truth_volume_mm3": c.truth_voxels * c.voxel_mm3,
            "pred_volume_mm3": c.pred_voxels * c.voxel_mm3,
            "pointing_slice_hits": c.pointing_slice_hits,
            "pointing_slices": c.pointing_slices,
            "pointing_study_hit": c.pointing_study_hit,
            "artery_dice": c.artery_dice,
            "fn_outside_territory": c.fn_outside_territory,
            "found_by_level": c.found_by_level or None,
        })
    return rows


def _roc_block(name: str, labels: Any, scores: Any, notes: list[str]) -> dict[str, Any]:
    y = np.asarray(labels, dtype=bool)
    block: dict[str, Any] = {"auc": None, "n_positive": int(y.sum()), "n_negative": int((~y).sum()), "roc": None}
    curve = roc_of(y, scores)
    if curve is None:
        negatives = plural(block["n_negative"], f"negative {name}", "negative studies" if name == "study" else None)
        notes.append(f"{name} AUC undefined: {block['n_positive']} positive and {negatives} (both classes are needed)")
        return block
    block["auc"] = roc_auc(y, np.asarray(scores, dtype=float))
    block["roc"] = {"fpr": _floats(curve.fpr), "tpr": _floats(curve.tpr), "thresholds": _floats(curve.thresholds)}
    return block


def _segmentation(evaluation: CohortEvaluation, notes: list[str]) -> dict[str, Any]:
    per_case = {c.case_id: c.dice for c in evaluation.cases if c.dice is not None}
    values = np.asarray(list(per_case.values()), dtype=float)
    if not values.size:
        notes.append("Dice undefined: no positive study")
    return {
        "mask": evaluation.mask,
        "n_cases": int(values.size),
        "dice_mean": float(values.mean()) if values.size else None,
        "dice_median": float(np.median(values)) if values.size else None,
        "dice_min": float(values.min()) if values.size else None,
        "dice_max": float(values.max()) if values.size else None,
        "per_case": per_case,
    }


def _detection(cases: tuple[CaseResult, ...], notes: list[str]) -> dict[str, Any]:
    tp, fn, fp = (sum(getattr(c, k) for c in cases) for k in ("tp", "fn", "fp"))
    outside = [c.fn_outside_territory for c in cases if c.fn_outside_territory is not None]
    if tp + fn == 0:
        notes.append("embolus sensitivity undefined: no embolus in the evaluated cases")
    return {
        "n_scans": len(cases),
        "n_emboli": tp + fn,
        "tp": tp,
        "fn": fn,
        "fp": fp,
        "sensitivity": tp / (tp + fn) if tp + fn else None,
        "precision": tp / (tp + fp) if tp + fp else None,
        "fp_per_scan": fp / len(cases),
        "f1": detection_f1(tp, fp, fn),
        # missed emboli with no voxel in the predicted territory (cases with arteries.nii.gz only)
        "missed_outside_territory": sum(outside) if outside else None,
        # {level: [found, total]} where the ground truth names the emboli's levels (phantoms)
        "by_level": sum_levels(c.found_by_level for c in cases) or None,
    }


def _froc(cases: tuple[CaseResult, ...], notes: list[str]) -> dict[str, Any] | None:
    curve = froc_of(cases)
    if curve is None:
        notes.append("FROC undefined: no embolus in the evaluated cases")
        return None
    at = sensitivity_at_fp(curve, FP_RATES_PER_SCAN)
    return {
        "score": "peak heat of the component",
        "thresholds": _floats(curve.thresholds),
        "sensitivity": _floats(curve.sensitivity),
        "mean_fp_per_scan": _floats(curve.mean_fp_per_scan),
        "sensitivity_at_fp": {f"{rate:g}": float(s) for rate, s in zip(FP_RATES_PER_SCAN, at, strict=True)},
    }


def _pointing(evaluation: CohortEvaluation, notes: list[str]) -> dict[str, Any]:
    cases = evaluation.cases
    slice_hits = sum(c.pointing_slice_hits for c in cases)
    n_slices = sum(c.pointing_slices for c in cases)
    studies = [c.pointing_study_hit for c in cases if c.pointing_study_hit is not None]
    if not n_slices:
        notes.append("pointing accuracy undefined: no positive slice")
    return {
        "tolerance_mm": evaluation.tolerance_mm,
        "slice_accuracy": slice_hits / n_slices if n_slices else None,
        "slice_hits": slice_hits,
        "n_positive_slices": n_slices,
        "study_accuracy": float(np.mean(studies)) if studies else None,
        "study_hits": int(sum(studies)),
        "n_positive_studies": len(studies),
    }


def _arteries(cases: tuple[CaseResult, ...], notes: list[str]) -> dict[str, Any] | None:
    per_case = {c.case_id: c.artery_dice for c in cases if c.artery_dice is not None}
    if not per_case:
        notes.append("artery Dice not computed: no prediction has arteries.nii.gz")
        return None
    values = np.asarray(list(per_case.values()), dtype=float)
    if len(per_case) < len(cases):
        notes.append(f"artery Dice over the {len(per_case)} of {len(cases)} cases that have arteries.nii.gz")
    return {"n_cases": len(per_case), "dice_mean": float(values.mean()), "dice_median": float(np.median(values)),
            "per_case": per_case}


def _floats(values: np.ndarray) -> list[float | None]:
    """Plain floats for JSON; infinities (the ROC's first threshold) become ``None``."""
    return [float(v) if np.isfinite(v) else None for v in np.asarray(values, dtype=float)]
