"""One study through the label-up chain: artery territory -> slice classifier -> explainer -> pseudo-mask.

The explanation selects among candidate clot components (hypodense voxels in the eroded territory); it is
never the mask itself. iExplain rounds hide what was found (the found voxels are given the lumen's HU, so
they read as opacified blood) and explain again until no new component appears.

Every array is on the input volume's grid, ``(Z, Y, X)``; centroids are LPS mm.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..explain.registry import DEFAULT_EXPLAINER, explainer_for_model, resolve_explainer
from ..models.artery import predict_artery_territory
from ..models.slices import SliceSpec, build_slice_stack, replace_planes, study_probability
from ..preprocessing import CropBox, crop_geometry, mask_box
from ..pseudomask import (
    candidate_clot_voxels,
    components,
    describe_emboli,
    emboli_count,
    erode_territory,
    iterative_pseudomask,
    lumen_median_hu,
)
from ..volume import CTVolume
from .slices import classify_slices, slice_heat

log = logging.getLogger(__name__)

Progress = Callable[[str, float, str], None]


@dataclass(frozen=True)
class LabelUpSettings:
    """Thresholds of the chain (documented defaults; stored with every result).

    Attributes:
        explainer: registry name (``gradcam``, ``gradcampp``, ``ig``).
        explain_min_probability: slices whose PE probability is below this are not explained (heat 0).
        heat_low, heat_high: hysteresis thresholds on ``heat = slice map x slice probability``.
        max_rounds: iExplain rounds at most.
        min_volume_mm3: candidate components (and segmenter components) smaller than this are dropped. On
            the 48 training phantoms 30 mm^3 (about the volume of a 4 mm ball) cut the pseudo-masks' false
            components from 1.17 to 0.21 per scan and lost no detected embolus (8 mm^3: the first setting).
        min_study_probability: below this study probability the study reads as negative: the heatmap is
            kept, the pseudo-mask and the emboli list stay empty (the segmentation too, see ``analyze``).
        study_top_mm: z extent of the top slices averaged into the study probability.
        wall_clear_mm: candidates also come from the territory's eroded wall where no opacified lumen lies
            within this many mm (occluded thin branches); ``None`` (the default): from the eroded territory
            only. Off because it added false components and no detection on the validation cohort; see
            :mod:`~PELabelUpLib.pseudomask.candidates`.
        precision: ``auto`` (mixed precision where the hardware has it natively) or ``float32``; see
            :mod:`~PELabelUpLib.models.inference`.
    """

    explainer: str = DEFAULT_EXPLAINER
    explain_min_probability: float = 0.3
    heat_low: float = 0.25
    heat_high: float = 0.5
    max_rounds: int = 3
    min_volume_mm3: float = 30.0
    min_study_probability: float = 0.5
    study_top_mm: float = 10.0
    wall_clear_mm: float | None = None
    precision: str = "auto"


@dataclass
class LabelUpResult:
    """What the chain found in one study (arrays on the input grid)."""

    territory: np.ndarray
    slice_probabilities: np.ndarray
    study_probability: float
    heatmap: np.ndarray
    pseudomask: np.ndarray
    emboli: list[dict[str, Any]]
    rounds: int
    stop_reason: str
    timings_s: dict[str, float] = field(default_factory=dict)
    #: the classifier layers the Grad-CAM family explained (from its metadata); ``None``: the explainer's
    #: default (the last convolution), or an explainer without layers
    explanation_layers: list[str] | None = None
    #: the explainer that made the heatmap (``settings.explainer`` resolved for this classifier: ``auto`` names
    #: one, see :func:`~PELabelUpLib.explain.registry.resolve_explainer`)
    explainer: str | None = None


def _noop(stage: str, fraction: float, message: str) -> None:
    return None


def label_up_case(volume: CTVolume, artery: tuple[nn.Module, dict] | None, classifier: tuple[nn.Module, dict], *,
                  settings: LabelUpSettings | None = None, device: str | torch.device = "cpu",
                  territory: np.ndarray | None = None, progress: Progress | None = None) -> LabelUpResult:
    """Run the whole chain on one CT.

    Args:
        volume: the CT (HU) on any grid (oblique and anisotropic grids included).
        artery: ``(network, metadata)`` of the artery territory model (:func:`~PELabelUpLib.models.folder.load_model`);
            may be ``None`` when ``territory`` is given.
        classifier: ``(network, metadata)`` of the slice classifier.
        settings: thresholds; defaults when ``None``.
        device: torch device.
        territory: a known artery territory ``(Z, Y, X)`` on the volume's grid (e.g. corrected by a reader);
            the artery model is then not run.
        progress: ``progress(stage, fraction, message)`` callback.
    """
    settings = settings or LabelUpSettings()
    progress = progress or _noop
    timings: dict[str, float] = {}
    geometry = volume.geometry
    spacing = geometry.spacing_mm

    t0 = time.perf_counter()
    if territory is None:
        if artery is None:
            raise ValueError("label_up_case needs an artery model or a territory")
        progress("arteries", 0.05, "segmenting the pulmonary artery territory")
        territory, _ = predict_artery_territory(volume, artery[0], artery[1], device=device,
                                                precision=settings.precision)
    elif territory.shape != volume.hu.shape:
        raise ValueError(f"territory shape {territory.shape} differs from the volume's {volume.hu.shape}")
    territory = (np.asarray(territory) > 0).astype(np.uint8)
    timings["arteries"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    progress("classifier", 0.35, "classifying slices")
    network, metadata = classifier
    spec = SliceSpec.from_metadata(metadata)
    stack = build_slice_stack(volume.hu, territory, spacing, spec)
    probs = classify_slices(stack, network, spec, device=device, precision=settings.precision)
    study_p = study_probability(probs, float(spacing[2]), top_mm=settings.study_top_mm)
    timings["classifier"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    progress("pseudomask", 0.55, "finding candidate clot voxels")
    heatmap = np.zeros(volume.hu.shape, dtype=np.float32)
    pseudomask = np.zeros(volume.hu.shape, dtype=np.uint8)
    emboli: list[dict[str, Any]] = []
    rounds, stop_reason = 0, "no_candidates"
    explanation_layers = None
    explainer_used = resolve_explainer(settings.explainer, classifier[1])  # "auto" names one for this classifier
    # the box's margin must hold the opacified voxels that decide the wall rule
    margin = 2 if settings.wall_clear_mm is None else max(2, int(np.ceil(settings.wall_clear_mm / min(spacing))) + 1)
    box = mask_box(territory, margin_voxels=margin)
    if box is not None:
        # candidates, heat and selection live in the territory's bounding box only (time and memory)
        hu_box, territory_box_arr = volume.hu[box.slices], territory[box.slices]
        # the eroded territory and its lumen HU serve the candidates and the neutral fill of masked regions
        inner = erode_territory(territory_box_arr.astype(bool), spacing, None)
        lumen_hu = lumen_median_hu(hu_box, inner) if inner.any() else 300.0
        candidates = components(candidate_clot_voxels(hu_box, territory_box_arr, spacing_mm=spacing, inner=inner,
                                                      lumen_hu=lumen_hu, wall_clear_mm=settings.wall_clear_mm),
                                spacing, settings.min_volume_mm3)
        explainer = explainer_for_model(explainer_used, metadata)
        layers = getattr(explainer, "target_layers", None)
        explanation_layers = list(layers) if layers else None
        first_round = {"probs": probs, "stack": stack}
        z_box, y_box, x_box = box.slices

        def explain_fn(masked_box: np.ndarray) -> np.ndarray:
            if first_round:
                round_stack, round_probs = first_round.pop("stack"), first_round.pop("probs")
            else:
                # only the box's slices change: rebuild those planes, not a copy of the whole CT
                planes = volume.hu[z_box].copy()
                planes[:, y_box, x_box] = masked_box
                round_stack = replace_planes(stack, planes, int(z_box.start or 0), spec)
                round_probs = classify_slices(round_stack, network, spec, device=device,
                                              precision=settings.precision)
            heat = slice_heat(round_stack, network, spec, explainer, round_probs, settings.explain_min_probability,
                              device=device)
            return np.zeros(box.shape_zyx, dtype=np.float32) if heat is None else heat[box.slices]

        positive = study_p >= settings.min_study_probability
        # a study read as negative keeps its first round's heatmap only: further rounds would find masks it drops
        result = iterative_pseudomask(explain_fn, hu_box, candidates, low=settings.heat_low,
                                      high=settings.heat_high, max_rounds=settings.max_rounds if positive else 1,
                                      neutral_value=lumen_hu)
        heatmap[box.slices] = np.clip(result.heat_max, 0.0, 1.0)
        rounds, stop_reason = len(result.rounds), result.stop_reason
        if positive:
            pseudomask[box.slices] = result.mask
            emboli = _shift_ijk(describe_emboli(result.mask.astype(np.uint8), heatmap[box.slices],
                                                crop_geometry(geometry, box)), box)
        else:
            stop_reason = "study_negative"
            log.info("study probability %.3f < %.2f: no pseudo-mask", study_p, settings.min_study_probability)
    timings["explain_and_pseudomask"] = time.perf_counter() - t0
    progress("pseudomask", 0.95, f"{emboli_count(len(emboli))} found")
    return LabelUpResult(territory=territory, slice_probabilities=probs, study_probability=study_p,
                         heatmap=heatmap, pseudomask=pseudomask, emboli=emboli, rounds=rounds,
                         stop_reason=stop_reason, timings_s=timings, explanation_layers=explanation_layers,
                         explainer=explainer_used)


def _shift_ijk(emboli: list[dict[str, Any]], box: CropBox) -> list[dict[str, Any]]:
    """Index keys of emboli described on the box -> indices of the full grid (LPS keys are unchanged)."""
    offset = box.start_index_xyz
    for embolus in emboli:
        for key, cast in (("centroid_ijk", float), ("peak_ijk", int)):
            if embolus.get(key) is not None:
                embolus[key] = tuple(cast(v + o) for v, o in zip(embolus[key], offset, strict=True))
    return emboli
