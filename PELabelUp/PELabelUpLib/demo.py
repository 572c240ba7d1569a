"""The demo job behind ``make demo``: the embedded sample case analysed with the bundled models.

The sample case is a synthetic CTPA study with four emboli, made on the spot from a fixed seed (bit-identical on
every machine, so nothing large is stored in the repository): its CT and ground truth go to
``<out>/<case_id>/``, the analysis (:func:`~PELabelUpLib.analysis.run.analyze`, the same code as
``pelabelup analyze``) to ``<out>/<case_id>/analysis/``, and ``overview.png`` shows the CT with the heatmap,
the pseudo-mask, the segmentation, the artery territory and the true emboli. Rerunning replaces the analysis
only once the new one is complete.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .analysis.outputs import OUTPUT_FILES
from .analysis.progress import Progress
from .evaluate import dice, lesion_detection
from .explain.registry import DEFAULT_EXPLAINER
from .io import load_ct, read_label_file
from .pseudomask import emboli_count
from .render import overview_point, render_overview
from .synthetic.cohort import write_case_nifti
from .synthetic.phantom import generate_phantom

DEMO_SEED = 20261126
DEMO_OVERRIDES = {"size_xy": (256, 256), "n_slices": 160, "spacing_mm": (1.2, 1.2, 1.5),
                  "positive": True, "n_emboli": 4}


@dataclass(frozen=True)
class DemoResult:
    """Where the demo wrote what, and how the analysis compares with the case's ground truth."""

    folder: Path
    ct: Path
    analysis: Path
    overview: Path
    pe_probability: float
    emboli_found: int  # components of the segmentation (the pseudo-mask's without a segmenter)
    emboli_true: int  # 26-connected components of the ground truth, counted as the segmentation's are
    emboli_detected: int  # true emboli that the segmentation touches
    dice_pseudomask: float
    dice_segmentation: float
    segmentation_source: str
    seconds: float


def make_sample_case(out_dir: str | Path, *, seed: int = DEMO_SEED) -> Path:
    """Write the sample case (CT and ground truth, NIfTI) into ``out_dir/<case_id>/``; returns that folder.

    An existing folder of the same case is kept (the phantom is deterministic).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    case_id = f"phantom-{seed}"
    if (out / case_id / "case.json").is_file():
        return out / case_id
    return write_case_nifti(generate_phantom(seed, **DEMO_OVERRIDES), out)


def run_demo(out_dir: str | Path, *, seed: int = DEMO_SEED, device: str = "auto", explainer: str = DEFAULT_EXPLAINER,
             models_dir: str | Path | None = None, progress: Progress | None = None) -> DemoResult:
    """Make the sample case, analyse it with the bundled models and draw the overview.

    Raises:
        InputError: a bundled model is missing or its weights do not match their sha256 (one line).
    """
    from .analysis.run import analyze  # imports torch: not at start-up of the command line

    folder = make_sample_case(out_dir, seed=seed)
    analysis = folder / "analysis"
    fresh = folder / f".analysis-new-{os.getpid()}"
    if fresh.exists():
        shutil.rmtree(fresh)
    analyze(folder / "ct.nii.gz", fresh, device=device, explainer=explainer, models_dir=models_dir,
            progress=progress)
    if analysis.exists():
        shutil.rmtree(analysis)
    fresh.rename(analysis)
    return _summarise(folder, analysis)


def _summarise(folder: Path, analysis: Path) -> DemoResult:
    record = json.loads((analysis / "result.json").read_text())
    ct = load_ct(folder / "ct.nii.gz")
    maps = {name: read_label_file(analysis / OUTPUT_FILES[name])[0] for name in ("pseudomask", "segmentation",
                                                                                 "arteries")}
    heatmap = read_label_file(analysis / OUTPUT_FILES["heatmap"])[0].astype(np.float32)
    truth, _ = read_label_file(folder / "emboli.nii.gz")
    overview = folder / "overview.png"
    source = record.get("segmentation_source", "segmenter")
    listed = "segmenter" if source == "segmenter" else "pseudomask"
    matched = lesion_detection(maps["segmentation"], truth, ct.geometry.spacing_mm)  # 26-connected, as evaluate
    detected, n_true = matched.tp, matched.tp + matched.fn
    found = sum(1 for e in record["emboli"] if e.get("source") == listed)
    render_overview(ct, {"predicted arteries": maps["arteries"], "true emboli": truth > 0,
                         "PE pseudo-mask": maps["pseudomask"], f"PE segmentation ({source})": maps["segmentation"]},
                    overview, heatmap=heatmap, point_zyx=overview_point(truth.shape, {"emboli": truth}),
                    title=f"{folder.name}: PE probability {record['pe_probability']:.2f}, "
                          f"{emboli_count(found)} segmented, touching {detected} of {n_true} true")
    return DemoResult(folder=folder, ct=folder / "ct.nii.gz", analysis=analysis, overview=overview,
                      pe_probability=float(record["pe_probability"]), emboli_found=found,
                      emboli_true=int(n_true), emboli_detected=detected, dice_pseudomask=dice(maps["pseudomask"], truth > 0),
                      dice_segmentation=dice(maps["segmentation"], truth > 0), segmentation_source=source,
                      seconds=float(record.get("timings_s", {}).get("total", 0.0)))


