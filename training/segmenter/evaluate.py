"""Evaluate a segmenter model folder: Dice of its masks against a cohort's ground-truth emboli.

Every prediction goes through :func:`~PELabelUpLib.models.segmenter.predict_segmentation` on the case's own grid
(what inference does) with the territory of ``--territory`` (``gt`` or ``pred:DIR``, as in training), and is
compared there with ``emboli.nii.gz``::

    python -m training.segmenter.evaluate --model models/pelabelup-segmenter --cohort cohort-test \\
        --territory pred:predictions-test --write

Scores: per positive case Dice, voxel precision and recall; over negative cases the false-positive volume.
``--write`` records the summary in the model folder's ``metadata["metrics"]`` (weights and sha256 untouched).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from PELabelUpLib.errors import InputError
from PELabelUpLib.evaluate import dice
from PELabelUpLib.evaluate.predictions import read_cohort
from PELabelUpLib.io import load_ct
from PELabelUpLib.models.folder import load_model
from PELabelUpLib.models.segmenter import predict_segmentation
from training.engine.evaluate_cli import brief_figures, evaluate_parser, finish_evaluation, start_evaluation

from .data import read_mask_on
from .sources import LabelSource, TerritorySource, parse_territory_source

log = logging.getLogger("training.segmenter.evaluate")


def case_scores(pred: np.ndarray, truth: np.ndarray, voxel_ml: float) -> dict[str, Any]:
    """Overlap of a predicted emboli mask with the reference, both ``(Z, Y, X)`` on one grid (nonzero = embolus)."""
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and reference {truth.shape} differ in shape")
    p, t = pred != 0, truth != 0
    overlap = int(np.logical_and(p, t).sum())
    return {"positive": bool(t.any()), "dice": dice(p, t) if t.any() else None,
            "precision": overlap / int(p.sum()) if p.any() else None,
            "recall": overlap / int(t.sum()) if t.any() else None,
            "predicted_ml": round(float(p.sum()) * voxel_ml, 4), "reference_ml": round(float(t.sum()) * voxel_ml, 4)}


def evaluate_cohort(cohort: str | Path, network: nn.Module, metadata: dict[str, Any], territory: TerritorySource, *,
                    device: str = "cpu", limit: int | None = None,
                    on_case: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Scores of every case with a CT and a territory, and their summary (Dice over positive cases; false-positive
    volume over negative ones)."""
    truth_source = LabelSource("gt")
    per_case = []
    for row in read_cohort(cohort)[:limit]:
        territory_path, truth_path = territory.file_for(row), truth_source.file_for(row)
        if row.ct_path is None or territory_path is None or truth_path is None:
            log.warning("%s: skipped (CT, territory or emboli.nii.gz missing)", row.case_id)
            continue
        started = time.perf_counter()
        volume = load_ct(row.ct_path)
        mask, _ = predict_segmentation(volume, read_mask_on(territory_path, volume.geometry), network, metadata,
                                       device=device)
        voxel_ml = float(np.prod(volume.geometry.spacing_mm)) / 1000.0
        scores = {"case_id": row.case_id} | case_scores(mask, read_mask_on(truth_path, volume.geometry), voxel_ml)
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
        "seconds_per_case": float(np.mean([c["seconds"] for c in per_case])),
    }
    return summary | {"per_case": per_case}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = evaluate_parser("python -m training.segmenter.evaluate", __doc__.split("\n")[0],
                        model_help="segmenter model folder")
    p.add_argument("--cohort", type=Path, required=True, help="cohort with ground truth (cohort.csv)")
    p.add_argument("--territory", default="gt", help="gt | pred:DIR (default: gt)")
    p.add_argument("--limit", type=int, help="only the first N cases")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    start_evaluation(args)
    try:
        territory = parse_territory_source(args.territory)
        network, metadata = load_model(args.model, device=args.device)
        report = evaluate_cohort(args.cohort, network, metadata, territory, device=args.device, limit=args.limit,
                                 on_case=lambda s: log.info("%s: Dice %s", s["case_id"], s["dice"]))
    except (InputError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    finish_evaluation(args, report, {f"heldout:{args.cohort.name}": brief_figures(report)})
    return 0

if __name__ == "__main__":
    sys.exit(main())
