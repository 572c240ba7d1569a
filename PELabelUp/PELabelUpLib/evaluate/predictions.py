"""Reading an evaluation's inputs: the ground-truth cohort and one prediction folder per case.

Ground truth (written by ``pelabelup synth``, see :mod:`PELabelUpLib.synthetic.cohort`): ``cohort.csv``
names every case; its ``path`` column (relative to the cohort folder) is the folder holding
``emboli.nii.gz``, ``arteries.nii.gz`` and ``case.json`` -- ``<case_id>/`` in the NIfTI layout (with
``ct.nii.gz`` beside them), ``masks/<StudyInstanceUID>/`` in the RSPECT layout (the CT is the DICOM series
under ``train/<StudyInstanceUID>/``). No value may lead outside the cohort or predictions folder: ``case_id``
and ``study_uid`` are plain folder names, ``path`` is relative and does not go up (:func:`cohort_row`).

Predictions (the analysis contract): ``<predictions>/<case_id>/`` (in the RSPECT layout
``<predictions>/<StudyInstanceUID>/`` is accepted too) holding

* ``result.json``: ``pe_probability`` (float in [0, 1]), ``slice_probabilities`` (one float in [0, 1] per
  axial slice k of the case's grid), ``emboli`` (list of dicts: ``label``, ``voxels``, ``volume_mm3``,
  ``centroid_lps_mm``, ``peak_heat``, ...), optional ``territory.source`` (``model``, the default, or ``file``:
  an artery mask was given, ``pelabelup analyze --arteries``);
* ``heatmap.nii.gz`` (float32 in [0, 1]) and ``pseudomask.nii.gz`` (uint8 0/1);
* optional ``segmentation.nii.gz`` (uint8 0/1) and ``arteries.nii.gz`` (uint8 0/1, artery territory);

every image on the case's grid (size, spacing, origin and direction equal to the ground truth's, within the
tolerances of :func:`~PELabelUpLib.geometry.grid_differences`). A mask may be a label map (whole numbers >= 0,
nonzero = inside); one with negative or fractional values (a CT, a heatmap) is refused. Arrays are numpy
``(Z, Y, X)``; sizes and spacings in messages are in index order ``(x, y, z)``; positions are LPS mm. Every
problem raises :class:`~PELabelUpLib.errors.InputError` naming the file.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..analysis.territory import check_mask_values
from ..datastore.paths import check_case_id
from ..errors import InputError
from ..geometry import Geometry, grid_differences
from ..io import read_label_file
from .levels import emboli_levels

log = logging.getLogger(__name__)

MaskChoice = Literal["pseudomask", "segmentation"]
MASK_CHOICES: tuple[MaskChoice, ...] = ("pseudomask", "segmentation")
HEAT_TOLERANCE = 1e-4  # heat slightly outside [0, 1] from float rounding is accepted (and clipped)
RESULT_JSON = "result.json"
#: ``territory.source`` of result.json: the artery model's territory, or a mask given to the analysis
TERRITORY_SOURCES = ("model", "file")
HEATMAP_FILE = "heatmap.nii.gz"
ARTERIES_FILE = "arteries.nii.gz"


@dataclass(frozen=True)
class CohortCase:
    """One row of ``cohort.csv``.

    Attributes:
        case_id: the case's name (``phantom-<seed>``...).
        study_uid: RSPECT StudyInstanceUID (empty in the NIfTI layout).
        truth_dir: folder holding ``emboli.nii.gz``, ``arteries.nii.gz`` and ``case.json``.
        ct_path: ``ct.nii.gz`` (NIfTI layout) or the study's DICOM folder (RSPECT layout); ``None`` when
            neither exists (plots then show no CT).
    """

    case_id: str
    study_uid: str
    truth_dir: Path
    ct_path: Path | None


@dataclass(frozen=True)
class GroundTruth:
    """The reference of one case, on its grid.

    Attributes:
        emboli: ``uint8 (Z, Y, X)`` label map (0 none, k = embolus k of ``case.json``).
        slice_labels: ``bool (Z,)``, True where axial slice k holds an embolus (from ``case.json``).
        positive: the study label (``case.json``).
        geometry: the grid (LPS mm) of ``emboli.nii.gz``.
        levels: label value -> level of each embolus ``case.json`` names one for (:mod:`.levels`; may be empty).
    """

    case: CohortCase
    emboli: np.ndarray
    slice_labels: np.ndarray
    positive: bool
    geometry: Geometry
    levels: dict[int, str] = field(default_factory=dict)

    def arteries(self) -> np.ndarray:
        """``bool (Z, Y, X)`` artery mask (read on demand: only artery Dice needs it)."""
        path = self.case.truth_dir / ARTERIES_FILE
        values, geometry = read_label_file(path)
        check_same_grid(path, geometry, self.geometry, "emboli.nii.gz")
        return values != 0


@dataclass(frozen=True)
class Prediction:
    """One case's analysis outputs, validated against its ground-truth grid.

    Attributes:
        folder: the prediction folder.
        pe_probability: study probability of PE, in [0, 1].
        slice_probabilities: ``float (Z,)``, one per axial slice k.
        emboli: the ``emboli`` list of ``result.json`` as written.
        heatmap: ``float32 (Z, Y, X)`` in [0, 1].
        mask: ``bool (Z, Y, X)``: the chosen mask (pseudo-mask or segmentation), nonzero = embolus.
        mask_kind: which file ``mask`` came from.
        arteries: ``bool (Z, Y, X)`` predicted artery territory, or ``None`` when not given.
        territory_source: where that territory came from: ``model`` (the artery model's), or ``file`` (a mask
            given to the analysis); result.json's ``territory.source``.
    """

    folder: Path
    pe_probability: float
    slice_probabilities: np.ndarray
    emboli: list[dict[str, Any]]
    heatmap: np.ndarray
    mask: np.ndarray
    mask_kind: MaskChoice
    arteries: np.ndarray | None
    territory_source: str = "model"


def read_cohort(cohort_dir: str | Path) -> list[CohortCase]:
    """The cases of a cohort folder, in ``cohort.csv`` order (both layouts).

    Raises:
        InputError: naming ``cohort.csv``: not found, no case, a column or value missing, a case listed twice,
            or a value that would lead outside the cohort or predictions folder (see :func:`cohort_row`).
    """
    root = Path(cohort_dir)
    index = root / "cohort.csv"
    if not index.is_file():
        raise InputError(index, "not found: expected a cohort written by 'pelabelup synth' (cohort.csv)")
    with index.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise InputError(index, "no case listed")
    missing_columns = {"case_id", "path"} - set(rows[0])
    if missing_columns:
        raise InputError(index, f"missing column(s) {sorted(missing_columns)}")
    cases, seen = [], set()
    for n, row in enumerate(rows, start=2):
        case_id, study_uid, rel = cohort_row(index, n, row)
        if case_id in seen:
            raise InputError(index, f"line {n}: case_id {case_id!r} listed twice")
        seen.add(case_id)
        truth_dir = root / rel
        ct_path: Path | None = truth_dir / "ct.nii.gz"
        if not ct_path.is_file():
            dicom = root / "train" / study_uid if study_uid else None
            ct_path = dicom if dicom is not None and dicom.is_dir() else None
        cases.append(CohortCase(case_id, study_uid, truth_dir, ct_path))
    return cases


def cohort_row(index: Path, n: int, row: dict[str, str | None]) -> tuple[str, str, str]:
    """``(case_id, study_uid, path)`` of line ``n`` of ``cohort.csv``, refused (:class:`InputError` naming it)
    when ``case_id`` or ``path`` is empty, when ``case_id`` or ``study_uid`` is no plain folder name (they name
    prediction folders; rules of :func:`~PELabelUpLib.datastore.paths.check_case_id`), or when ``path`` is
    absolute or goes up (``..``): no value may lead outside the cohort or predictions folder."""
    case_id, study_uid, rel = ((row.get(key) or "").strip() for key in ("case_id", "study_uid", "path"))
    if not case_id or not rel:
        raise InputError(index, f"line {n}: empty case_id or path")
    for column, value in (("case_id", case_id), ("study_uid", study_uid)):
        try:
            if value:
                check_case_id(value)
        except InputError as exc:  # exc.path: "case id '<value, cut when long>'"
            raise InputError(index, f"line {n}: {column} {exc.path.removeprefix('case id ')}: {exc.reason}") from None
    path = Path(rel)
    if path.is_absolute() or path.drive or ".." in path.parts:
        raise InputError(index, f"line {n}: path {rel!r} leads outside the cohort folder (absolute, or with '..')")
    return case_id, study_uid, rel


def prediction_folders(
    cases: list[CohortCase], predictions_dir: str | Path
) -> tuple[dict[str, Path], list[str], list[str]]:
    """Match cases to prediction folders.

    Returns:
        ``(found, missing, extra)``: case_id -> folder (``<case_id>/`` or ``<study_uid>/`` holding a
        ``result.json``), the case ids without one, and the names of folders that match no case.
    """
    root = Path(predictions_dir)
    if not root.is_dir():
        raise InputError(root, "predictions folder not found")
    found: dict[str, Path] = {}
    missing: list[str] = []
    for case in cases:
        names = [case.case_id] + ([case.study_uid] if case.study_uid else [])
        folder = next((root / n for n in names if (root / n / RESULT_JSON).is_file()), None)
        if folder is None:
            missing.append(case.case_id)
        else:
            found[case.case_id] = folder
    used = {p.name for p in found.values()}
    extra = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in used
                   and (p / RESULT_JSON).is_file())
    return found, missing, extra


def read_ground_truth(case: CohortCase) -> GroundTruth:
    """Load ``emboli.nii.gz`` and ``case.json`` of one case (checked against each other)."""
    record_path = case.truth_dir / "case.json"
    record = _read_json(record_path)
    emboli, geometry = read_label_file(case.truth_dir / "emboli.nii.gz")
    labels = record.get("slice_labels")
    n_slices = geometry.shape_zyx[0]
    if not isinstance(labels, list) or len(labels) != n_slices:
        shown = len(labels) if isinstance(labels, list) else type(labels).__name__
        raise InputError(record_path, f"slice_labels must list {n_slices} values (one per axial slice), got {shown}")
    positive = record.get("positive")
    if not isinstance(positive, bool | int):
        raise InputError(record_path, f"positive must be true or false, got {positive!r}")
    return GroundTruth(case=case, emboli=emboli, slice_labels=np.asarray(labels, dtype=bool),
                       positive=bool(positive), geometry=geometry, levels=emboli_levels(record))


def read_prediction(folder: str | Path, truth: GroundTruth, *, mask: MaskChoice = "pseudomask") -> Prediction:
    """Load and validate one prediction folder against the ground truth's grid (rules in the module doc)."""
    if mask not in MASK_CHOICES:
        raise ValueError(f"mask must be one of {MASK_CHOICES}, got {mask!r}")
    root = Path(folder)
    result_path = root / RESULT_JSON
    result = _read_json(result_path)
    n_slices = truth.geometry.shape_zyx[0]
    pe_probability = _probability(result_path, "pe_probability", result.get("pe_probability"))
    raw_slices = result.get("slice_probabilities")
    if not isinstance(raw_slices, list) or len(raw_slices) != n_slices:
        shown = f"{len(raw_slices)} values" if isinstance(raw_slices, list) else repr(type(raw_slices).__name__)
        raise InputError(result_path, f"slice_probabilities must list {n_slices} values (one per axial slice of "
                                      f"the case), got {shown}")
    slice_probabilities = np.asarray(
        [_probability(result_path, f"slice_probabilities[{k}]", v) for k, v in enumerate(raw_slices)], dtype=float)
    emboli = result.get("emboli", [])
    if not isinstance(emboli, list) or not all(isinstance(e, dict) for e in emboli):
        raise InputError(result_path, "emboli must be a list of objects")
    heatmap = _read_on_grid(root / HEATMAP_FILE, truth.geometry).astype(np.float32, copy=False)
    if not np.isfinite(heatmap).all():
        raise InputError(root / HEATMAP_FILE, "holds NaN or infinite values")
    lo, hi = float(heatmap.min()), float(heatmap.max())
    if lo < -HEAT_TOLERANCE or hi > 1 + HEAT_TOLERANCE:
        raise InputError(root / HEATMAP_FILE, f"values must lie in [0, 1], found {lo:.4g}..{hi:.4g}")
    heatmap = np.clip(heatmap, 0.0, 1.0)
    chosen = _read_mask_on_grid(root / f"{mask}.nii.gz", truth.geometry)
    arteries_path = root / ARTERIES_FILE
    arteries = _read_mask_on_grid(arteries_path, truth.geometry) if arteries_path.is_file() else None
    territory = result.get("territory", {"source": "model"})
    if not isinstance(territory, dict) or territory.get("source") not in TERRITORY_SOURCES:
        raise InputError(result_path, f"territory must be an object whose source is one of {TERRITORY_SOURCES}, "
                                      f"got {json.dumps(territory)[:120]}")
    return Prediction(folder=root, pe_probability=pe_probability, slice_probabilities=slice_probabilities,
                      emboli=emboli, heatmap=heatmap, mask=chosen, mask_kind=mask, arteries=arteries,
                      territory_source=territory["source"])


def read_study_probability(folder: str | Path) -> float:
    """The ``pe_probability`` of a prediction folder's ``result.json``, checked like :func:`read_prediction` does
    (an :class:`InputError` naming the file when it is missing, not JSON or not a probability)."""
    path = Path(folder) / RESULT_JSON
    return _probability(path, "pe_probability", _read_json(path).get("pe_probability"))


def check_same_grid(path: Path, geometry: Geometry, reference: Geometry, reference_name: str) -> None:
    """Raise :class:`InputError` naming ``path`` when its grid differs from ``reference``'s."""
    differences = grid_differences(geometry, reference)
    if differences:
        raise InputError(path, f"grid differs from the ground truth ({reference_name}): {'; '.join(differences)}")


def _read_on_grid(path: Path, reference: Geometry) -> np.ndarray:
    if not path.is_file():
        raise InputError(path, "file not found")
    values, geometry = read_label_file(path)
    check_same_grid(path, geometry, reference, "emboli.nii.gz")
    return values


def _read_mask_on_grid(path: Path, reference: Geometry) -> np.ndarray:
    """``bool`` mask (nonzero voxels) of a mask or label map; an image given instead is refused
    (:func:`~PELabelUpLib.analysis.territory.check_mask_values`)."""
    values = _read_on_grid(path, reference)
    check_mask_values(values, path)
    return values != 0


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read: {exc}") from None
    if not isinstance(value, dict):
        raise InputError(path, f"expected a JSON object, got {type(value).__name__}")
    return value


def _probability(path: Path, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(path, f"{name} must be a finite number, got {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise InputError(path, f"{name} must lie in [0, 1], got {value!r}")
    return float(value)
