"""Write a label-up result as files on the input's exact grid (the analysis contract's core outputs).

``folder/result.json`` (``pe_probability``, ``slice_probabilities``, ``emboli`` with LPS centroids, settings,
models, timings), ``heatmap.nii.gz`` (float32 in [0, 1]), ``pseudomask.nii.gz`` and ``arteries.nii.gz``
(uint8 0/1). The folder is written under a temporary name and renamed into place when complete.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..io import write_volume
from ..volume import CTVolume

if TYPE_CHECKING:  # the pipeline imports torch; writing outputs does not need it
    from .pipeline import LabelUpResult, LabelUpSettings


def result_record(result: LabelUpResult, volume: CTVolume, settings: LabelUpSettings,
                  models: list[dict[str, Any]] | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    g = volume.geometry
    record = {
        "pe_probability": round(float(result.study_probability), 6),
        "slice_probabilities": [round(float(p), 6) for p in result.slice_probabilities],
        "emboli": [dict(e, source="pseudomask") for e in result.emboli],
        "coordinate_system": "LPS (mm), index order (i, j, k) = (x, y, z)",
        "geometry": {"size": list(g.size), "spacing_mm": list(g.spacing_mm), "origin_lps_mm": list(g.origin_mm),
                     "direction": list(g.direction)},
        "input": volume.source,
        "iexplain": {"rounds": result.rounds, "stop_reason": result.stop_reason,
                     "explanation_layers": result.explanation_layers, "explainer": result.explainer},
        "settings": asdict(settings),
        "models": models or [],
        "timings_s": {k: round(v, 3) for k, v in result.timings_s.items()},
    }
    return record | (extra or {})


def write_labelup_outputs(folder: str | Path, result: LabelUpResult, volume: CTVolume, settings: LabelUpSettings,
                          models: list[dict[str, Any]] | None = None, extra: dict[str, Any] | None = None) -> Path:
    """Write the outputs into ``folder`` (must not exist yet); returns it."""
    final = Path(folder)
    if final.exists():
        raise FileExistsError(f"{final}: output folder exists already")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        g = volume.geometry
        write_volume(result.heatmap.astype(np.float32), tmp / "heatmap.nii.gz", g)
        write_volume(result.pseudomask.astype(np.uint8), tmp / "pseudomask.nii.gz", g)
        write_volume(result.territory.astype(np.uint8), tmp / "arteries.nii.gz", g)
        record = result_record(result, volume, settings, models, extra)
        (tmp / "result.json").write_text(json.dumps(record, indent=1) + "\n")
        tmp.replace(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
