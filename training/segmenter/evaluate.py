"""Evaluate a segmenter model folder: Dice of its masks against a cohort's ground-truth emboli.

Every prediction goes through :func:`~PELabelUpLib.models.segmenter.predict_segmentation` on the case's own grid
(what inference does) with the territory of ``--territory`` (``gt`` or ``pred:DIR``, as in training), and is
compared there with ``emboli.nii.gz``::

    python -m training.segmenter.evaluate --model models/pelabelup-segmenter --cohort cohort-test \\
        --territory pred:predictions-test --as-analyzed --write

Scores: per positive case Dice, voxel precision and recall; over negative cases the false-positive volume; over
all cases the emboli found and the false components (:func:`~PELabelUpLib.evaluate.detection.lesion_detection`:
an embolus is found when a predicted voxel touches it), with the detection F1. ``--as-analyzed`` keeps of each
mask what ``pelabelup analyze`` keeps (:func:`~PELabelUpLib.analysis.run.segmentation_as_analyzed`: no component
under 30 mm^3, nothing in a study the classifier read as negative, from the ``result.json`` beside the territory
of ``--territory pred:DIR``), so the figures are those ``pelabelup evaluate --mask segmentation`` gives for the
same models. ``--write`` records the summary in the model folder's ``metadata["metrics"]`` (weights and sha256
untouched).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from PELabelUpLib.analysis.run import segmentation_as_analyzed
from PELabelUpLib.errors import InputError
from PELabelUpLib.evaluate import dice
from PELabelUpLib.evaluate.detection import detection_f1, lesion_detection
from PELabelUpLib.evaluate.levels import emboli_levels as levels_from_record
from PELabelUpLib.evaluate.levels import found_by_level, sum_levels
from PELabelUpLib.evaluate.predictions import read_cohort, read_study_probability
from PELabelUpLib.io import load_ct
from PELabelUpLib.labelup.pipeline import LabelUpSettings
from PELabelUpLib.models.folder import load_model
from PELabelUpLib.models.segmenter import predict_segmentation
from PELabelUpLib.pseudomask import components
from training.engine.evaluate_cli import brief_figures, evaluate_parser, finish_evaluation, start_evaluation

from .data import read_label_on, read_mask_on
from .sources import LabelSource, TerritorySource, parse_territory_source

log = logging.getLogger("training.segmenter.evaluate")


def case_scores(pred: np.ndarray, truth: np.ndarray, spacing_mm: Sequence[float]) -> dict[str, Any]:
    """Overlap of a predicted emboli mask with the reference, both ``(Z, Y, X)`` on one grid (nonzero = embolus;
    ``spacing_mm`` in index order ``(x, y, z)``): Dice, voxel precision and recall, volumes, and the emboli the
    mask finds and its false components."""
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and reference {truth.shape} differ in shape")
    p, t = pred != 0, truth != 0
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    overlap = int(np.logical_and(p, t).sum())
    found = lesion_detection(p, t, spacing_mm)
    return {"positive": bool(t.any()), "dice": dice(p, t) if t.any() else None,
            "precision": overlap / int(p.sum()) if p.any() else None,
            "recall": overlap / int(t.sum()) if t.any() else None,
            "predicted_ml": round(float(p.sum()) * voxel_ml, 4), "reference_ml": round(float(t.sum()) * voxel_ml, 4),
            "emboli": found.tp + found.fn, "emboli_found": found.tp, "false_components": found.fp}


def emboli_levels(truth_dir: Path) -> dict[int, str]:
    """Label value -> level of a case's emboli, from its ``case.json`` (:func:`PELabelUpLib.evaluate.levels.
    emboli_levels`); empty without one."""
    record = truth_dir / "case.json"
    return levels_from_record(json.loads(record.read_text())) if record.is_file() else {}


def evaluate_cohort(cohort: str | Path, network: nn.Module, metadata: dict[str, Any], territory: TerritorySource, *,
                    device: str = "cpu", limit: int | None = None, as_analyzed: bool = False,
                    min_volume_mm3: float = 0.0, operating_points: Sequence[float] = (),
                    on_case: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Scores of every case with a CT and a territory, and their summary (Dice over positive cases; false-positive
    volume over negative ones; emboli found and false components over all, with the detection F1; emboli found by
    level where the cases' ``case.json`` names them).

    Args:
        as_analyzed: keep of each mask what ``pelabelup analyze`` keeps (see the module doc).
        min_volume_mm3: drop predicted components under this volume (after ``as_analyzed``).
        operating_points: further probability thresholds at which the emboli found and the false components are
            counted (``summary["operating_points"]``, for a FROC), with the same volume rule.
    """
    if any(not 0.0 < t <= 1.0 for t in operating_points):
        raise ValueError(f"operating points are probability thresholds in (0, 1], got {list(operating_points)}")
    if as_analyzed and territory.root is None:
        raise ValueError("--as-analyzed needs --territory pred:DIR: the analysis folders, whose result.json holds "
                         "each study's probability")
    settings = LabelUpSettings()
    truth_source = LabelSource("gt")
    per_case = []
    for row in read_cohort(cohort)[:limit]:
        territory_path, truth_path = territory.file_for(row), truth_source.file_for(row)
        if row.ct_path is None or territory_path is None or truth_path is None:
            log.warning("%s: skipped (CT, territory or emboli.nii.gz missing)", row.case_id)
            continue
        started = time.perf_counter()
        volume = load_ct(row.ct_path)
        spacing = volume.geometry.spacing_mm
        probability = read_study_probability(territory_path.parent) if as_analyzed else None
        if probability is not None and probability < settings.min_study_probability:
            mask = np.zeros(volume.hu.shape, dtype=np.uint8)  # analyze does not run the segmenter on such a study
            prob = np.zeros(volume.hu.shape, dtype=np.float32)
        else:
            mask, prob = predict_segmentation(volume, read_mask_on(territory_path, volume.geometry), network,
                                              metadata, device=device)
            if probability is not None:
                mask = segmentation_as_analyzed(mask, spacing, probability, settings)
        mask = _drop_small(mask, spacing, min_volume_mm3)
        truth_labels = read_label_on(truth_path, volume.geometry)
        scores = {"case_id": row.case_id} | case_scores(mask, truth_labels, spacing)
        levels = emboli_levels(row.truth_dir)
        if levels:
            scores["found_by_level"] = found_by_level(mask, truth_labels, levels)
        if operating_points:
            scores["operating_points"] = [_operating_point(prob >= t, truth_labels, spacing, t, min_volume_mm3)
                                          for t in operating_points]
        scores["seconds"] = round(time.perf_counter() - started, 2)
        per_case.append(scores)
        if on_case:
            on_case(scores)
    if not per_case:
        raise InputError(cohort, "no case to evaluate")
    dices = np.array([c["dice"] for c in per_case if c["positive"]], dtype=float)
    negatives = [c["predicted_ml"] for c in per_case if not c["positive"]]
    summary: dict[str, Any] = {
        "cases": len(per_case), "positive_cases": int(dices.size), "territory": territory.spec.partition(":")[0],
        "dice_mean": float(dices.mean()) if dices.size else None,
        "dice_median": float(np.median(dices)) if dices.size else None,
        "recall_mean": float(np.mean([c["recall"] for c in per_case if c["positive"]])) if dices.size else None,
        "negative_cases_with_fp": int(sum(v > 0 for v in negatives)),
        "negative_fp_ml_mean": float(np.mean(negatives)) if negatives else None,
        **detection_summary(per_case), "as_analyzed": as_analyzed, "min_volume_mm3": min_volume_mm3,
        "found_by_level": sum_levels(c.get("found_by_level", {}) for c in per_case),
        "operating_points": [{"threshold": t} | detection_summary([c["operating_points"][i] for c in per_case])
                             for i, t in enumerate(operating_points)],
        "seconds_per_case": float(np.mean([c["seconds"] for c in per_case])),
    }
    return summary | {"per_case": per_case}


def _drop_small(mask: np.ndarray, spacing_mm: Sequence[float], min_volume_mm3: float) -> np.ndarray:
    """``mask`` (nonzero = predicted) as ``uint8`` 0/1 without components under ``min_volume_mm3`` (0: all kept)."""
    if min_volume_mm3 <= 0:
        return (np.asarray(mask) != 0).astype(np.uint8)
    return (components(np.asarray(mask) != 0, spacing_mm, min_volume_mm3) > 0).astype(np.uint8)


def _operating_point(pred: np.ndarray, truth: np.ndarray, spacing_mm: Sequence[float], threshold: float,
                     min_volume_mm3: float) -> dict[str, Any]:
    """Emboli found and false components of ``pred`` (already thresholded at ``threshold``) after the volume rule."""
    found = lesion_detection(_drop_small(pred, spacing_mm, min_volume_mm3), truth != 0, spacing_mm)
    return {"threshold": threshold, "emboli": found.tp + found.fn, "emboli_found": found.tp,
            "false_components": found.fp}


def detection_summary(per_case: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Emboli found of all, false components per scan, sensitivity and detection F1 over :func:`case_scores`."""
    emboli = sum(c["emboli"] for c in per_case)
    found = sum(c["emboli_found"] for c in per_case)
    false = sum(c["false_components"] for c in per_case)
    return {"emboli": emboli, "emboli_found": found, "sensitivity": found / emboli if emboli else None,
            "false_components_per_scan": false / len(per_case) if per_case else None,
            "detection_f1": detection_f1(found, false, emboli - found)}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = evaluate_parser("python -m training.segmenter.evaluate", __doc__.split("\n")[0],
                        model_help="segmenter model folder")
    p.add_argument("--cohort", type=Path, required=True, help="cohort with ground truth (cohort.csv)")
    p.add_argument("--territory", default="gt", help="gt | pred:DIR (default: gt)")
    p.add_argument("--limit", type=int, help="only the first N cases")
    p.add_argument("--as-analyzed", action="store_true",
                   help="keep what pelabelup analyze keeps: no component under 30 mm^3, nothing where the "
                        "result.json beside the --territory pred:DIR reads P(PE) < 0.5")
    p.add_argument("--min-volume-mm3", type=float, default=0.0,
                   help="drop predicted components under this volume (default 0: keep all)")
    p.add_argument("--operating-points", type=float, nargs="+", default=(), metavar="T",
                   help="also count emboli found and false components at these probability thresholds (FROC)")
    return p.parse_args(argv)


def _log_case(scores: dict[str, Any]) -> None:
    log.info("%s: Dice %s, %d of %d emboli found, %d false components", scores["case_id"], scores["dice"],
             scores["emboli_found"], scores["emboli"], scores["false_components"])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    start_evaluation(args)
    try:
        territory = parse_territory_source(args.territory)
        network, metadata = load_model(args.model, device=args.device)
        report = evaluate_cohort(args.cohort, network, metadata, territory, device=args.device, limit=args.limit,
                                 as_analyzed=args.as_analyzed, min_volume_mm3=args.min_volume_mm3,
                                 operating_points=args.operating_points, on_case=_log_case)
    except (InputError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    finish_evaluation(args, report, {f"heldout:{args.cohort.name}": brief_figures(report)})
    return 0

if __name__ == "__main__":
    sys.exit(main())
