"""Evaluate an artery territory model folder: Dice on a held-out cohort and on the real CTA crop.

Every prediction goes through :func:`~PELabelUpLib.models.artery.predict_artery_territory` on the case's own grid
(what inference does), and is compared there with the reference mask. For cohorts with emboli masks it also
measures what matters most for the selector: how much of each clot lies inside the predicted territory
(an occluded branch is still artery). Emboli masks are used here only, never in training::

    python -m training.artery.evaluate --model models/pelabelup-arteries --cohort cohort-test \\
        --real-cta ../shared/data/real-cta --write

``--write`` records the numbers in the model folder's ``metadata["metrics"]`` (the weights and their sha256
are untouched).
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
from scipy import ndimage
from torch import nn

from PELabelUpLib.errors import InputError
from PELabelUpLib.evaluate import dice
from PELabelUpLib.io import read_label_file
from PELabelUpLib.io.image_files import read_image_file
from PELabelUpLib.models.artery import predict_artery_territory
from PELabelUpLib.models.folder import load_model
from PELabelUpLib.preprocessing import mask_box
from training.engine.evaluate_cli import brief_figures, evaluate_parser, finish_evaluation, start_evaluation

from .data import CohortCase, list_cohort_cases

#: per-case lists left out of the figures recorded in the metadata
BRIEF_DROP = ("per_case", "emboli_inside_fraction", "by_radius")

log = logging.getLogger("training.artery.evaluate")

REAL_CTA_FILE = "cta_crop.nii.gz"
REAL_MASK_FILE = "pulmonary_artery.nii.gz"


#: edges (mm) of the branch-radius bins of :func:`recall_by_radius`
RADIUS_EDGES_MM = (1.0, 1.5, 2.0, 3.0)


def radius_bin_names(edges: Sequence[float] = RADIUS_EDGES_MM) -> list[str]:
    """``["<1", "1-1.5", ..., ">=3"]`` for the edges."""
    names = [f"<{edges[0]:g}"] + [f"{a:g}-{b:g}" for a, b in zip(edges, edges[1:], strict=False)]
    return names + [f">={edges[-1]:g}"]


def recall_by_radius(pred: np.ndarray, truth: np.ndarray, spacing_mm: Sequence[float],
                     edges: Sequence[float] = RADIUS_EDGES_MM) -> dict[str, list[int]]:
    """Reference voxels and the predicted ones among them, by the radius of the branch they belong to.

    A voxel's branch radius is at least ``e`` when it lies within ``e`` (plus half the smallest voxel size) of a
    voxel whose depth is ``e`` or more (a ball of radius ``e`` fits there; depth: the Euclidean distance, mm, ``spacing_mm`` in index order
    ``(x, y, z)``, to the nearest voxel outside the reference, about half a voxel more than the geometric
    distance to the wall). So the whole cross-section of a branch, its rim included, falls in its branch's bin.
    Returns ``{"reference": [...], "found": [...]}``, one count per bin of :func:`radius_bin_names`.
    """
    t = truth != 0
    n_bins = len(edges) + 1
    if not t.any():
        return {"reference": [0] * n_bins, "found": [0] * n_bins}
    sampling = tuple(float(v) for v in spacing_mm)[::-1]
    box = mask_box(t, margin_voxels=3)
    tb, pb = t[box.slices], pred[box.slices] != 0
    depth = ndimage.distance_transform_edt(tb, sampling=sampling)
    half_voxel = 0.5 * min(sampling)  # depth is measured to the next voxel's centre
    bins = np.zeros(int(tb.sum()), dtype=np.int64)
    for edge in edges:
        core = depth >= edge
        if not core.any():
            break
        bins += (ndimage.distance_transform_edt(~core, sampling=sampling) <= edge + half_voxel)[tb]
    return {"reference": np.bincount(bins, minlength=n_bins).tolist(),
            "found": np.bincount(bins, weights=pb[tb].astype(np.float64), minlength=n_bins).astype(int).tolist()}


def territory_scores(pred: np.ndarray, truth: np.ndarray, emboli: np.ndarray | None = None, *,
                     spacing_mm: Sequence[float] | None = None) -> dict[str, Any]:
    """Overlap of a predicted territory with the reference artery mask, both ``(Z, Y, X)`` on one grid.

    Returns ``dice``, ``precision`` (share of predicted voxels in the reference), ``recall`` (share of the
    reference predicted); with ``spacing_mm``, ``by_radius`` (:func:`recall_by_radius`); and, when an emboli
    label map (0 none, k = embolus k) is given: ``emboli_voxels``, ``emboli_voxels_inside`` (voxels of all clots
    inside the prediction), and ``emboli_inside_fraction``, one value per embolus (share of its voxels inside).
    """
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and reference {truth.shape} differ in shape")
    p, t = pred != 0, truth != 0
    overlap = int(np.logical_and(p, t).sum())
    scores: dict[str, Any] = {
        "dice": dice(p, t),
        "precision": overlap / int(p.sum()) if p.any() else float("nan"),
        "recall": overlap / int(t.sum()) if t.any() else float("nan"),
        "predicted_voxels": int(p.sum()), "reference_voxels": int(t.sum()),
    }
    if spacing_mm is not None:
        scores["by_radius"] = recall_by_radius(p, t, spacing_mm)
    if emboli is not None:
        if emboli.shape != pred.shape:
            raise ValueError(f"emboli map {emboli.shape} and prediction {pred.shape} differ in shape")
        labels = emboli[emboli > 0]
        inside = p[emboli > 0]
        counts = np.bincount(labels, minlength=int(labels.max(initial=0)) + 1)
        hits = np.bincount(labels, weights=inside.astype(np.float64), minlength=counts.size)
        present = np.flatnonzero(counts[1:]) + 1
        scores |= {"emboli_voxels": int(labels.size), "emboli_voxels_inside": int(inside.sum()),
                   "emboli_inside_fraction": [float(hits[k] / counts[k]) for k in present]}
    return scores


def predict_case(ct_path: Path, network: nn.Module, metadata: dict[str, Any], device: str) -> tuple[np.ndarray, Any]:
    """Territory mask ``uint8 (Z, Y, X)`` of a CT file on its own grid, and that grid."""
    volume = read_image_file(ct_path)
    mask, _ = predict_artery_territory(volume, network, metadata, device=device)
    return mask, volume.geometry


def _label(path: Path, geometry: Any) -> np.ndarray:
    array, label_geometry = read_label_file(path)
    if not label_geometry.same_grid(geometry):
        raise InputError(path, f"grid {label_geometry.size} differs from the CT's {geometry.size}")
    return array


def evaluate_cases(cases: Sequence[CohortCase], network: nn.Module, metadata: dict[str, Any], *,
                   device: str = "cpu", on_case: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Scores of every case and their summary.

    Summary: ``dice_mean``/``dice_median``/``dice_min``, ``precision_mean``, ``recall_mean``,
    ``recall_by_radius_mm`` (pooled over the cases, per bin of :func:`radius_bin_names`); over all emboli of
    all cases: ``emboli``, ``emboli_voxel_fraction_inside`` (pooled voxels), ``emboli_mean_fraction_inside``
    (mean of per-embolus shares), ``emboli_mostly_inside`` (share of emboli with >= half their voxels inside)
    and ``emboli_fully_inside`` (>= 95 %).
    """
    if not cases:
        raise ValueError("no case to evaluate")
    per_case = []
    for case in cases:
        started = time.perf_counter()
        mask, geometry = predict_case(case.ct_path, network, metadata, device)
        emboli = _label(case.emboli_path, geometry) if case.emboli_path is not None else None
        scores = territory_scores(mask, _label(case.arteries_path, geometry), emboli, spacing_mm=geometry.spacing_mm)
        scores = {"case_id": case.case_id} | scores | {"seconds": round(time.perf_counter() - started, 2)}
        per_case.append(scores)
        if on_case:
            on_case(scores)
    dices = np.array([c["dice"] for c in per_case])
    fractions = [f for c in per_case for f in c.get("emboli_inside_fraction", [])]
    clot_voxels = sum(c.get("emboli_voxels", 0) for c in per_case)
    summary: dict[str, Any] = {
        "cases": len(per_case), "dice_mean": float(dices.mean()), "dice_median": float(np.median(dices)),
        "dice_min": float(dices.min()),
        "precision_mean": float(np.nanmean([c["precision"] for c in per_case])),
        "recall_mean": float(np.nanmean([c["recall"] for c in per_case])),
        "recall_by_radius_mm": _pooled_by_radius(per_case),
        "emboli": len(fractions),
    }
    if fractions:
        f = np.asarray(fractions)
        summary |= {
            "emboli_voxel_fraction_inside": sum(c["emboli_voxels_inside"] for c in per_case) / clot_voxels,
            "emboli_mean_fraction_inside": float(f.mean()),
            "emboli_mostly_inside": float((f >= 0.5).mean()),
            "emboli_fully_inside": float((f >= 0.95).mean()),
        }
    return summary | {"per_case": per_case}


def _pooled_by_radius(per_case: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """Recall per branch-radius bin over the voxels of all cases (``None`` where no reference voxel fell)."""
    reference = np.sum([c["by_radius"]["reference"] for c in per_case], axis=0)
    found = np.sum([c["by_radius"]["found"] for c in per_case], axis=0)
    return {name: (round(float(f / r), 4) if r else None)
            for name, r, f in zip(radius_bin_names(), reference, found, strict=True)}


def evaluate_real_crop(real_dir: str | Path, network: nn.Module, metadata: dict[str, Any], *,
                       device: str = "cpu") -> dict[str, Any]:
    """Dice, precision and recall against the real crop's ``pulmonary_artery.nii.gz`` (a central-artery mask:
    the trunk and main pulmonary arteries, so intrapulmonary branches the model finds count against precision)."""
    folder = Path(real_dir)
    case = CohortCase("real-cta-crop", folder / REAL_CTA_FILE, folder / REAL_MASK_FILE)
    for path in (case.ct_path, case.arteries_path):
        if not path.is_file():
            raise InputError(path, "real CTA crop file not found")
    return evaluate_cases([case], network, metadata, device=device)["per_case"][0]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = evaluate_parser("python -m training.artery.evaluate", __doc__.split("\n")[0])
    p.add_argument("--cohort", type=Path, action="append", default=[],
                   help="held-out NIfTI-layout cohort (repeatable: each is reported under its folder name)")
    p.add_argument("--real-cta", type=Path, help="folder with cta_crop.nii.gz and pulmonary_artery.nii.gz")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    start_evaluation(args)
    try:
        network, metadata = load_model(args.model, device=args.device)
        report: dict[str, Any] = {}
        metrics: dict[str, Any] = {}
        for cohort in args.cohort:
            summary = evaluate_cases(list_cohort_cases(cohort), network, metadata, device=args.device,
                                     on_case=lambda s: log.info("%s: Dice %.3f", s["case_id"], s["dice"]))
            report[cohort.name] = summary
            metrics[f"heldout:{cohort.name}"] = brief_figures(summary, drop=BRIEF_DROP)
        if args.real_cta is not None:
            real = evaluate_real_crop(args.real_cta, network, metadata, device=args.device)
            report["real_cta_crop"] = real
            metrics["real_cta_crop"] = brief_figures(real, drop=BRIEF_DROP)
    except (InputError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    finish_evaluation(args, report, metrics)
    return 0

if __name__ == "__main__":
    sys.exit(main())
