"""Training studies from a cohort folder: image-level labels only, plus what the territory comes from.

Two layouts are read (see :mod:`PELabelUpLib.synthetic.cohort`):

* RSPECT (``train.csv`` + ``train/<study>/<series>/<sop>.dcm``): slice labels from ``pe_present_on_image``,
  study labels from ``negative_exam_for_pe``; the CT from the DICOM series. This is how real RSPECT data is read.
* NIfTI (``cohort.csv`` + ``<case>/ct.nii.gz`` + ``case.json``): slice labels from ``case.json``.

Pixel-level emboli masks are never read here: the classifier learns from image-level labels.
Artery masks (anatomy labels) are read only when the territory source is ``"gt"``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from PELabelUpLib.errors import InputError
from PELabelUpLib.evaluate.predictions import read_cohort
from PELabelUpLib.io import is_rspect_root, load_ct, read_label_file, read_rspect
from PELabelUpLib.volume import CTVolume


@dataclass(frozen=True)
class TrainingStudy:
    """One study: how to load its CT, its image-level labels, and where an artery mask is (if any).

    Attributes:
        case_id: stable name (RSPECT StudyInstanceUID or the cohort's case id).
        slice_labels: ``bool (Z,)`` aligned with the loaded volume's k axis.
        positive: study label.
        arteries_path: the cohort's artery mask, used only with ``territory="gt"``.
    """

    case_id: str
    load: Callable[[], CTVolume]
    slice_labels: np.ndarray
    positive: bool
    arteries_path: Path | None

    def load_arteries(self) -> np.ndarray:
        if self.arteries_path is None or not self.arteries_path.is_file():
            raise InputError(self.arteries_path or self.case_id, "no artery mask for this study")
        return read_label_file(self.arteries_path)[0]


def _nifti_studies(root: Path) -> list[TrainingStudy]:
    if not (root / "cohort.csv").is_file():
        raise InputError(root, "not a cohort: neither train.csv (RSPECT layout) nor cohort.csv found")
    studies = []
    for case in read_cohort(root):  # as the evaluation reads it: no value may lead outside the cohort
        folder = case.truth_dir
        record = json.loads((folder / "case.json").read_text())
        ct_path = folder / "ct.nii.gz"
        studies.append(TrainingStudy(
            case_id=case.case_id, load=lambda p=ct_path: load_ct(p),
            slice_labels=np.asarray(record["slice_labels"], dtype=bool), positive=bool(record["positive"]),
            arteries_path=folder / "arteries.nii.gz"))
    return studies


def _rspect_studies(root: Path) -> list[TrainingStudy]:
    studies = []
    for study in read_rspect(root):
        def load(s=study) -> CTVolume:
            return s.load()

        # slice labels follow the loaded volume's k order: read_rspect sorts slices along the normal
        studies.append(TrainingStudy(
            case_id=study.study_uid, load=load, slice_labels=np.asarray(study.slice_labels, dtype=bool),
            positive=study.is_pe_positive, arteries_path=root / "masks" / study.study_uid / "arteries.nii.gz"))
    return studies


def read_training_studies(root: str | Path) -> list[TrainingStudy]:
    """The studies of a cohort folder in either layout (RSPECT preferred when ``train.csv`` is there)."""
    root = Path(root)
    if is_rspect_root(root):
        return _rspect_studies(root)
    return _nifti_studies(root)


def training_studies(roots: Sequence[str | Path]) -> list[TrainingStudy]:
    """The studies of several cohort folders, in order; a study id found twice is an error (the slice cache is
    keyed by it, and a study counted twice would weigh double)."""
    studies: list[TrainingStudy] = []
    seen: dict[str, Path] = {}
    for root in roots:
        for study in read_training_studies(root):
            if study.case_id in seen:
                raise InputError(root, f"study {study.case_id} is also in {seen[study.case_id]}")
            seen[study.case_id] = Path(root)
            studies.append(study)
    return studies
