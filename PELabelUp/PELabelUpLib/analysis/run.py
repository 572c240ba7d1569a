"""``analyze``: one CT in, the analysis contract's output folder out (the call behind ``pelabelup analyze``).

Steps (progress stage, overall fraction): ``models`` (find and load, 0-0.05), ``load`` (read the CT,
0.05-0.10), the label-up chain ``arteries`` / ``classifier`` / ``pseudomask`` (0.10-0.80), ``segmenter``
(0.80-0.85; without a segmenter model the pseudo-mask is copied), ``write`` (0.85-0.99), ``done`` (1.0).
Every output lies on the input's exact grid (see :mod:`.outputs`). ``result.json`` holds ``pe_probability``,
``slice_probabilities`` (one per axial slice k of the input grid), ``emboli`` (per connected component:
``voxels``, ``volume_mm3``, ``centroid_ijk`` (continuous index, (i, j, k) = (x, y, z)), ``centroid_lps_mm``
(LPS world, mm), ``peak_heat``, ``source``), the models it ran (name, version, sha256; no artery model where
the territory was given, and then none is loaded either), the device (with the dtype
each kind of network ran in: ``device.precision``), the settings, ``iexplain`` (rounds, why they stopped, and the
classifier layers the heatmap explains: ``explanation_layers``, ``null`` for the last convolution, and the explainer
that made it: ``explainer``, the setting resolved for the classifier),
``territory`` (where the artery territory came from: ``{"source": "model"}``, or a given mask's file, sha256,
label and size, see :mod:`.territory`) and ``timings_s`` per stage.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..errors import InputError
from ..explain.registry import DEFAULT_EXPLAINER, check_explainer
from ..io import load_ct
from ..labelup.pipeline import LabelUpResult, LabelUpSettings, label_up_case
from ..models.inference import check_precision
from ..pseudomask import components, describe_emboli, emboli_count
from ..volume import CTVolume
from .device import describe_device, resolve_device
from .model_set import AnalysisModels, load_analysis_models
from .outputs import OUTPUT_FILES, check_output_free, write_analysis_outputs
from .progress import Progress, ScaledProgress
from .territory import GivenTerritory, read_territory

log = logging.getLogger(__name__)

#: version of the output folder's layout and ``result.json`` fields; bumped only on incompatible changes
RESULT_FORMAT = 1
NO_SEGMENTER = "pseudomask (no segmenter model)"


def _noop(stage: str, fraction: float, message: str) -> None:
    return None


def _segment(volume: CTVolume, result: LabelUpResult, models: AnalysisModels, device: torch.device,
             settings: LabelUpSettings) -> tuple[np.ndarray, str]:
    """The segmenter's mask with the chain's rules: components under ``min_volume_mm3`` dropped, nothing in a
    study read as negative (``min_study_probability``); the pseudo-mask's copy without a segmenter."""
    if models.segmenter is None:
        return result.pseudomask.astype(np.uint8, copy=True), NO_SEGMENTER
    if result.study_probability < settings.min_study_probability:
        return np.zeros(volume.hu.shape, dtype=np.uint8), "segmenter"
    from ..models.segmenter import predict_segmentation

    mask, _ = predict_segmentation(volume, result.territory, models.segmenter.network, models.segmenter.metadata,
                                   device=device, precision=settings.precision)
    if mask.shape != volume.hu.shape:
        raise RuntimeError(f"segmenter returned shape {mask.shape}, expected the input's {volume.hu.shape}")
    return segmentation_as_analyzed(mask, volume.geometry.spacing_mm, result.study_probability, settings), "segmenter"


def segmentation_as_analyzed(mask: np.ndarray, spacing_mm: Sequence[float], study_probability: float,
                             settings: LabelUpSettings) -> np.ndarray:
    """What ``analyze`` keeps of a segmenter mask: ``uint8`` 0/1, empty in a study read as negative
    (``study_probability`` under ``min_study_probability``), else without components under ``min_volume_mm3``."""
    if study_probability < settings.min_study_probability:
        return np.zeros(np.shape(mask), dtype=np.uint8)
    kept = components(np.asarray(mask) > 0, spacing_mm, settings.min_volume_mm3)
    return (kept > 0).astype(np.uint8)


def analyze_volume(volume: CTVolume, out_dir: str | Path, *, models: AnalysisModels, device: torch.device,
                   settings: LabelUpSettings, progress: Progress | None = None,
                   timings_s: dict[str, float] | None = None, extra: dict[str, Any] | None = None,
                   territory: GivenTerritory | None = None) -> Path:
    """Run the chain (and the segmenter) on a loaded CT and write the output folder ``out_dir``.

    Args:
        volume: the CT (HU, ``(Z, Y, X)``) on its own grid, which every output keeps.
        out_dir: must not exist; written whole or not at all.
        models: loaded by :func:`~.model_set.load_analysis_models` on ``device``.
        device: where the networks run.
        settings: the label-up chain's thresholds, explainer and precision (mixed precision on CUDA and on CPUs
            with native bfloat16 unless ``float32``: :mod:`~PELabelUpLib.models.inference`).
        progress: ``progress(stage, fraction, message)``; this call reports 0.10 .. 1.0.
        timings_s: earlier stages' seconds (``models``, ``load``) to record with this call's.
        extra: further ``result.json`` fields (the batch runner adds ``batch``).
        territory: an artery territory on the CT's grid (:func:`~.territory.read_territory`) to use instead of
            the artery model's.

    Returns:
        ``out_dir``.
    """
    progress = progress or _noop
    check_output_free(out_dir)
    if territory is None and models.artery is None:
        raise ValueError("no artery model was loaded: give the study's artery mask (--arteries)")
    timings = dict(timings_s or {})
    result = label_up_case(volume, None if models.artery is None else models.artery.pair, models.classifier.pair, settings=settings, device=device,
                           territory=None if territory is None else territory.mask,
                           progress=ScaledProgress(progress, 0.10, 0.80))
    t0 = time.perf_counter()
    progress("segmenter", 0.80, "segmenting emboli" if models.segmenter else "no segmenter model: copying the "
                                                                             "pseudo-mask")
    segmentation, source = _segment(volume, result, models, device, settings)
    result.timings_s = timings | result.timings_s | {"segmenter": time.perf_counter() - t0}

    emboli = [dict(e, source="pseudomask") for e in result.emboli]
    if source == "segmenter":
        emboli += [dict(e, source="segmenter") for e in describe_emboli(segmentation > 0, result.heatmap,
                                                                         volume.geometry)]
    record_extra = {
        "format": RESULT_FORMAT,
        "pelabelup_version": __version__,
        "emboli": emboli,
        "segmentation_source": source,
        "device": describe_device(device, settings.precision),
        "models": models.records(artery=territory is None),
        "files": dict(OUTPUT_FILES),
        "territory": {"source": "model"} if territory is None else territory.record,
    } | (extra or {})
    out, _ = write_analysis_outputs(out_dir, volume, result, settings, segmentation=segmentation,
                                    segmentation_source=source, record_extra=record_extra, progress=progress)
    n = len(result.emboli)
    progress("done", 1.0, f"PE probability {result.study_probability:.3f}, {emboli_count(n)}; "
                          f"wrote {out}")
    return out


def analyze(input_path: str | Path, out_dir: str | Path, *, device: str = "auto", explainer: str = DEFAULT_EXPLAINER,
            precision: str = "auto", models_dir: str | Path | None = None, progress: Progress | None = None,
            model_versions: dict[str, str] | None = None, settings: LabelUpSettings | None = None,
            arteries: str | Path | None = None, arteries_label: int | str | None = None) -> Path:
    """Analyse one CT: write the output folder ``out_dir`` (see the module docstring) and return it.

    Args:
        input_path: anything :func:`~PELabelUpLib.io.load_ct` reads (NIfTI/NRRD/MHA file, DICOM file or folder).
        out_dir: the output folder; must not exist. Nothing is left there (nor beside it) unless the whole
            analysis succeeds.
        device: ``auto`` (CUDA when available, with mixed precision, else the CPU), ``cpu`` or ``cuda``.
        explainer: a registered explainer name (``gradcam``, ``gradcampp``, ``ig``).
        precision: ``auto`` (mixed precision where the hardware computes it natively) or ``float32``
            (:mod:`~PELabelUpLib.models.inference`).
        models_dir: the only models folder searched; ``None``: the bundled and user folders (see
            :mod:`~PELabelUpLib.models.registry`).
        progress: ``progress(stage, fraction, message)`` callback; fractions rise from 0 to 1.0.
        model_versions: task -> version (``"latest"`` or exact) for models other than the bundled ones.
        settings: the chain's thresholds; ``explainer`` replaces its explainer.
        arteries: a pulmonary-artery mask or label map (any grid) used as the territory instead of the artery
            model's (:mod:`.territory`).
        arteries_label: the artery label in ``arteries`` when it is a label map of several (a number), or the
            segment of a ``.seg.nrrd`` (its name or ID).

    Raises:
        InputError: unreadable or non-CT input, an unusable ``arteries`` file, a missing or tampered model, an
            existing ``out_dir`` (one line each).
        ValueError: unknown explainer, precision or device, CUDA asked for but absent.
    """
    progress = progress or _noop
    out = check_output_free(out_dir)
    settings = chain_settings(settings, explainer, precision)
    torch_device = resolve_device(device)
    models, model_seconds = load_models_timed(torch_device, progress, models_dir=models_dir,
                                              model_versions=model_versions, artery=arteries is None)
    volume, load_seconds = read_input(input_path, progress, arteries=arteries, arteries_label=arteries_label)
    return analyze_volume(volume.ct, out, models=models, device=torch_device, settings=settings, progress=progress,
                          timings_s={"models": model_seconds, "load": load_seconds}, territory=volume.territory)


#: what makes one input of many fail while the others go on (``--batch`` and ``serve``)
INPUT_ERRORS = (InputError, ValueError, RuntimeError, OSError)


def chain_settings(settings: LabelUpSettings | None, explainer: str, precision: str) -> LabelUpSettings:
    """``settings`` (default: :class:`LabelUpSettings`) with ``explainer`` and ``precision``, both checked
    (``ValueError`` when unknown)."""
    return replace(settings or LabelUpSettings(), explainer=check_explainer(explainer),
                   precision=check_precision(precision))


def load_models_timed(torch_device: torch.device, progress: Progress, *, models_dir: str | Path | None = None,
                      model_versions: dict[str, str] | None = None,
                      artery: bool = True) -> tuple[AnalysisModels, float]:
    """Load the analysis models on ``torch_device`` after a ``models`` progress event; returns them and the
    seconds it took (the ``models`` timing of ``result.json``). ``artery=False``: every study brings its artery
    mask, so the artery model is left out."""
    t0 = time.perf_counter()
    progress("models", 0.0, f"loading models on {torch_device}")
    models = load_analysis_models(device=torch_device, models_dir=models_dir, versions=model_versions,
                                  artery=artery)
    return models, time.perf_counter() - t0


@dataclass(frozen=True)
class AnalysisInput:
    """One study as read: the CT and, where one was given, its artery territory on the CT's grid."""

    ct: CTVolume
    territory: GivenTerritory | None = None


def read_input(input_path: str | Path, progress: Progress, *, arteries: str | Path | None = None,
               arteries_label: int | str | None = None) -> tuple[AnalysisInput, float]:
    """Read one CT (and the artery mask ``arteries``, put on its grid) after a ``load`` progress event and log
    its grid; returns them and the seconds it took (the ``load`` timing of ``result.json``)."""
    t0 = time.perf_counter()
    progress("load", 0.05, f"reading {Path(input_path).name}")
    volume = load_ct(input_path)
    log.info("input %s: %s voxels, spacing %s mm", input_path, "x".join(map(str, volume.geometry.size)),
             ", ".join(f"{s:.3g}" for s in volume.geometry.spacing_mm))
    territory = None
    if arteries is not None:
        progress("load", 0.08, f"reading the artery mask {Path(arteries).name}")
        territory = read_territory(arteries, volume.geometry, label=arteries_label)
    elif arteries_label is not None:
        raise ValueError("an artery label needs an artery mask (--arteries)")
    return AnalysisInput(volume, territory), time.perf_counter() - t0
