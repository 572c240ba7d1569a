"""The evaluation report folder: ``metrics.json`` (every figure), ``report.md`` and PNG plots.

Layout of ``out_dir``::

    metrics.json      inputs (paths relative to out_dir), settings, every figure, the per-case table
    report.md         summary table, plots (relative links), per-case table, definitions
    roc.png           study and slice ROC
    froc.png          FROC with sensitivity at 0.5/1/2/4 false positives per scan
    cases/<id>.png    slice panels of the positive cases with the worst and best Dice
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import PELabelUpError
from ..geometry import grid_differences
from ..io import load_ct
from .cohort import CaseResult, CohortEvaluation
from .plots import plot_case_panel, plot_froc, plot_roc
from .predictions import TERRITORY_SOURCES, MaskChoice, read_ground_truth, read_prediction
from .report_markdown import render_markdown
from .summary import FP_RATES_PER_SCAN, case_rows, froc_of, roc_of, summarise

log = logging.getLogger(__name__)

SCHEMA = "pelabelup-evaluation/1"


@dataclass(frozen=True)
class Report:
    """What :func:`write_report` wrote, and the metrics document it holds."""

    folder: Path
    metrics_json: Path
    report_md: Path
    plots: dict[str, Path]
    metrics: dict[str, Any]


def relative_path(path: Path, start: Path) -> str:
    """``path`` relative to ``start`` (POSIX separators), or its name when no relative path exists."""
    try:
        return Path(os.path.relpath(Path(path).resolve(), Path(start).resolve())).as_posix()
    except ValueError:  # another drive
        return Path(path).name


def metrics_document(evaluation: CohortEvaluation, out_dir: str | Path,
                     plots: dict[str, str] | None = None) -> dict[str, Any]:
    """The content of ``metrics.json``: schema, date (UTC), version, inputs, settings, figures, cases, plots."""
    out = Path(out_dir)
    cases = evaluation.cases
    labels = np.concatenate([c.slice_labels for c in cases])
    return {
        "schema": SCHEMA,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "pelabelup_version": __version__,
        "inputs": {
            "paths_relative_to": "the folder of this file",
            "cohort": relative_path(evaluation.cohort_dir, out),
            "predictions": relative_path(evaluation.predictions_dir, out),
            "n_cohort_cases": evaluation.n_cohort_cases,
            "n_evaluated": len(cases),
            "n_missing": len(evaluation.missing),
            "missing": list(evaluation.missing),
            "extra_prediction_folders": list(evaluation.extra_predictions),
            "n_positive_studies": sum(c.positive for c in cases),
            "n_negative_studies": sum(not c.positive for c in cases),
            "n_slices": int(labels.size),
            "n_positive_slices": int(labels.sum()),
            "n_emboli": sum(c.n_emboli for c in cases),
            "territory_sources": {source: sum(c.territory_source == source for c in cases)
                                  for source in TERRITORY_SOURCES},
        },
        "settings": {
            "mask": evaluation.mask,
            "connectivity": 26,
            "pointing_tolerance_mm": evaluation.tolerance_mm,
            "fp_rates_per_scan": list(FP_RATES_PER_SCAN),
        },
        **summarise(evaluation),
        "cases": case_rows(evaluation),
        "plots": dict(plots or {}),
    }


def panel_cases(evaluation: CohortEvaluation, n_worst: int = 2, n_best: int = 2) -> list[tuple[str, CaseResult]]:
    """``(role, case)`` for the positive cases with the lowest and the highest Dice (distinct, worst first)."""
    if n_worst < 0 or n_best < 0:
        raise ValueError(f"n_worst and n_best must be >= 0, got {n_worst} and {n_best}")
    scored = sorted((c for c in evaluation.cases if c.dice is not None and c.n_emboli),
                    key=lambda c: (c.dice, c.case_id))
    worst = scored[:n_worst]
    worst_ids = {c.case_id for c in worst}
    best = [c for c in reversed(scored) if c.case_id not in worst_ids][:n_best]
    return [("worst Dice", c) for c in worst] + [("best Dice", c) for c in best]


def write_case_panel(case: CaseResult, mask: MaskChoice, path: Path, role: str) -> Path:
    """Reload one case (ground truth, prediction, CT when found) and draw its slice panel."""
    truth = read_ground_truth(case.case)
    prediction = read_prediction(case.prediction_dir, truth, mask=mask)
    ct_hu = None
    if case.case.ct_path is not None:
        try:
            ct = load_ct(case.case.ct_path)
        except PELabelUpError as exc:
            log.warning("case %s: CT not shown (%s)", case.case_id, exc)
        else:
            if grid_differences(ct.geometry, truth.geometry):
                log.warning("case %s: CT not shown, its grid differs from the masks'", case.case_id)
            else:
                ct_hu = ct.hu
    dice_text = "n/a" if case.dice is None else f"{case.dice:.3f}"
    title = (f"{case.case_id} ({role}): Dice {dice_text}, emboli found {case.tp}/{case.n_emboli}, "
             f"false-positive components {case.fp}, P(PE) {case.pe_probability:.3f}\n"
             f"slices through the largest reference embolus" + ("" if ct_hu is not None else " - CT not found"))
    return plot_case_panel(ct_hu, truth.emboli, prediction.heatmap, prediction.mask, truth.geometry.spacing_mm,
                           path, title)


def write_report(evaluation: CohortEvaluation, out_dir: str | Path, *, n_worst: int = 2,
                 n_best: int = 2) -> Report:
    """Write ``metrics.json``, the PNG plots and ``report.md`` into ``out_dir`` (created).

    Args:
        evaluation: from :func:`~PELabelUpLib.evaluate.cohort.evaluate_cohort`.
        out_dir: report folder; files already there with the same names are replaced.
        n_worst, n_best: how many positive cases with the lowest / highest Dice get a slice panel.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cases = evaluation.cases
    plots: dict[str, Path] = {}
    study_y = [c.positive for c in cases]
    study_s = [c.pe_probability for c in cases]
    slice_y = np.concatenate([c.slice_labels for c in cases])
    slice_s = np.concatenate([c.slice_probabilities for c in cases])
    metrics = metrics_document(evaluation, out)
    plots["roc"] = plot_roc([
        ("study: pe_probability", roc_of(study_y, study_s), metrics["study"]["auc"],
         metrics["study"]["n_positive"], metrics["study"]["n_negative"]),
        ("slice: slice_probabilities (pooled)", roc_of(slice_y, slice_s), metrics["slice"]["auc"],
         metrics["slice"]["n_positive"], metrics["slice"]["n_negative"]),
    ], out / "roc.png")
    at_fp = {} if metrics["froc"] is None else {
        float(k): v for k, v in metrics["froc"]["sensitivity_at_fp"].items()}
    plots["froc"] = plot_froc(froc_of(cases), at_fp, out / "froc.png", n_scans=len(cases),
                              n_emboli=metrics["detection"]["n_emboli"])
    panels: list[dict[str, Any]] = []
    for n, (role, case) in enumerate(panel_cases(evaluation, n_worst, n_best), start=1):
        path = write_case_panel(case, evaluation.mask, out / "cases" / f"{case.case_id}.png", role)
        plots[f"case_{n}"] = path
        panels.append({"role": role, "case_id": case.case_id, "dice": case.dice, "path": relative_path(path, out)})
    metrics["plots"] = {name: relative_path(p, out) for name, p in plots.items()}
    metrics["case_panels"] = panels
    metrics_json = out / "metrics.json"
    _write_text(metrics_json, json.dumps(metrics, indent=1, allow_nan=False) + "\n")
    report_md = out / "report.md"
    _write_text(report_md, render_markdown(metrics))
    log.info("evaluation report written to %s", out)
    return Report(folder=out, metrics_json=metrics_json, report_md=report_md, plots=plots, metrics=metrics)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")  # the report holds non-ASCII text; never the locale's encoding
    tmp.replace(path)
