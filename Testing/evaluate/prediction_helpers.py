"""Prediction folders built from a cohort's ground truth (the analysis contract), for evaluation tests."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from PELabelUpLib.geometry import Geometry
from PELabelUpLib.io import write_volume
from PELabelUpLib.pseudomask.describe import describe_emboli
from PELabelUpLib.synthetic.cohort import CaseRequest, generate_cohort

SMALL = {"size_xy": (96, 96), "n_slices": 48, "spacing_mm": (1.4, 1.4, 2.5)}
# three positive phantoms with two separate emboli each (seed 12's are tiny: 6 and 15 voxels), one negative
COHORT_SEEDS = ((11, True), (12, True), (13, True), (14, False))


def small_cohort(base: Path) -> Path:
    """The 4-case NIfTI cohort of :data:`COHORT_SEEDS` under ``base``, made once per test session: cohort
    generation keeps finished cases, so a second test module gets it at once. Tests only read it."""
    out = base / "evaluation-cohort"
    requests = []
    for index, (seed, positive) in enumerate(COHORT_SEEDS):
        overrides = dict(SMALL, positive=positive, n_emboli=2 if positive else 0)
        requests.append(CaseRequest(index, seed, "phantom", tuple(sorted(overrides.items()))))
    generate_cohort(out, requests, layout="nifti", workers=2)
    return out


@dataclass(frozen=True)
class TruthCase:
    """One case of a cohort as the tests see it: ids, folder, reference arrays ``(Z, Y, X)``, grid."""

    case_id: str
    study_uid: str
    folder: Path
    emboli: np.ndarray
    arteries: np.ndarray
    slice_labels: np.ndarray
    positive: bool
    geometry: Geometry


def read_truth_cases(cohort: Path) -> list[TruthCase]:
    """Every case of ``cohort`` (read with SimpleITK, independently of the code under test)."""
    with (cohort / "cohort.csv").open() as f:
        rows = list(csv.DictReader(f))
    cases = []
    for row in rows:
        folder = cohort / row["path"]
        image = sitk.ReadImage(str(folder / "emboli.nii.gz"))
        record = json.loads((folder / "case.json").read_text())
        cases.append(TruthCase(
            case_id=row["case_id"], study_uid=row["study_uid"], folder=folder,
            emboli=sitk.GetArrayFromImage(image),
            arteries=sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "arteries.nii.gz"))),
            slice_labels=np.asarray(record["slice_labels"], dtype=bool), positive=bool(record["positive"]),
            geometry=Geometry.from_sitk(image)))
    return cases


def write_prediction(
    out: Path,
    truth: TruthCase,
    *,
    mask: np.ndarray | None = None,
    heatmap: np.ndarray | None = None,
    pe_probability: float | None = None,
    slice_probabilities: np.ndarray | None = None,
    segmentation: np.ndarray | None = None,
    arteries: np.ndarray | None = None,
    geometry: Geometry | None = None,
    folder_name: str | None = None,
) -> Path:
    """Write ``out/<case_id>/`` (result.json, heatmap, pseudomask, optional segmentation and arteries).

    Defaults make a perfect prediction: mask = reference emboli, heat 0.9 on them and 0 elsewhere,
    probabilities = the labels.
    """
    geometry = geometry or truth.geometry
    mask = (truth.emboli > 0) if mask is None else np.asarray(mask, dtype=bool)
    if heatmap is None:
        heatmap = np.where(mask, 0.9, 0.0)
    heatmap = np.asarray(heatmap, dtype=np.float32)
    folder = out / (folder_name or truth.case_id)
    folder.mkdir(parents=True, exist_ok=True)
    result = {
        "pe_probability": float(truth.positive if pe_probability is None else pe_probability),
        "slice_probabilities": [float(v) for v in (truth.slice_labels if slice_probabilities is None
                                                   else slice_probabilities)],
        "emboli": [{**e, "centroid_ijk": list(e["centroid_ijk"]), "centroid_lps_mm": list(e["centroid_lps_mm"]),
                    "peak_ijk": list(e["peak_ijk"])} for e in describe_emboli(mask, heatmap, geometry)]
        if geometry.shape_zyx == mask.shape else [],
    }
    (folder / "result.json").write_text(json.dumps(result))
    write_volume(heatmap, folder / "heatmap.nii.gz", geometry)
    write_volume(mask.astype(np.uint8), folder / "pseudomask.nii.gz", geometry)
    if segmentation is not None:
        write_volume(np.asarray(segmentation, dtype=np.uint8), folder / "segmentation.nii.gz", geometry)
    if arteries is not None:
        write_volume(np.asarray(arteries, dtype=np.uint8), folder / "arteries.nii.gz", geometry)
    return folder


def far_blob(truth: TruthCase, radius_vox: int = 2) -> np.ndarray:
    """``bool (Z, Y, X)`` cube of side ``2 r + 1`` placed as far as possible from every reference voxel and
    every artery voxel (a false positive that cannot touch an embolus)."""
    from scipy import ndimage

    avoid = (truth.emboli > 0) | (truth.arteries > 0)
    distance = ndimage.distance_transform_edt(~avoid) if avoid.any() else np.ones(avoid.shape)
    r = radius_vox
    inner = np.zeros(avoid.shape, dtype=bool)
    inner[r:-r, r:-r, r:-r] = True
    z, y, x = np.unravel_index(np.argmax(np.where(inner, distance, -1)), avoid.shape)
    blob = np.zeros(avoid.shape, dtype=bool)
    blob[z - r:z + r + 1, y - r:y + r + 1, x - r:x + r + 1] = True
    assert not (blob & avoid).any()
    return blob
