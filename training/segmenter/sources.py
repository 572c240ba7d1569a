"""Where each training case's CT, artery territory and emboli labels come from.

Label sources (``--labels``, one or more, in order of precedence: for every case the first source that holds a
file for it is used, so ``--labels corrected:FIXED pseudo:PRED`` takes corrected masks where they exist and
pseudo-masks elsewhere):

``gt``
    the cohort's ground truth ``emboli.nii.gz`` (label map; nonzero = embolus): the fully supervised upper bound.
``pseudo:DIR``
    ``DIR/<case_id>/pseudomask.nii.gz`` (or ``DIR/<StudyInstanceUID>/``), a prediction folder of the label-up
    chain (:mod:`PELabelUpLib.labelup.outputs`, ``python -m training.predict_cohort``).
``corrected:DIR``
    ``DIR/<case_id>/corrected.nii.gz`` (or ``DIR/<StudyInstanceUID>/``): a reader's corrected mask (0/1).

Territory sources (``--territory``): ``gt`` (the cohort's ``arteries.nii.gz``) or ``pred:DIR``
(``DIR/<case_id>/arteries.nii.gz``, the territory the label-up chain used, as inference will see it). The default
is ``pred:DIR`` of the first ``pseudo:DIR`` label source, else ``gt``; train the upper bound with
``--labels gt --territory pred:DIR`` to compare label sources on the same territory.

A training datastore (``--datastore DIR``, :class:`PELabelUpLib.datastore.Datastore`: radiologists' exports)
comes before every ``--labels`` source: each datastore case trains on its stored image and its latest final
mask (kind ``corrected``), in the territory exported with it (``arteries``; else the cohort case's territory);
a cohort case whose case id or StudyInstanceUID is a datastore case id is replaced by it, and datastore cases
outside the cohort are added.

Every mask must lie on its CT's grid. Cohorts in either layout are read (:func:`PELabelUpLib.evaluate.predictions.
read_cohort`: ``ct.nii.gz`` or the RSPECT study's DICOM folder).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from PELabelUpLib.errors import InputError
from PELabelUpLib.evaluate.predictions import CohortCase as CohortRow
from PELabelUpLib.evaluate.predictions import read_cohort

log = logging.getLogger(__name__)

LabelKind = Literal["gt", "pseudo", "corrected"]
LABEL_KINDS: tuple[LabelKind, ...] = ("gt", "pseudo", "corrected")
LABEL_FILES: dict[str, str] = {"gt": "emboli.nii.gz", "pseudo": "pseudomask.nii.gz", "corrected": "corrected.nii.gz"}
TERRITORY_FILE = "arteries.nii.gz"


@dataclass(frozen=True)
class LabelSource:
    """One ``--labels`` entry: its kind and, except for ``gt``, the folder of per-case folders."""

    kind: LabelKind
    root: Path | None = None

    @property
    def spec(self) -> str:
        return self.kind if self.root is None else f"{self.kind}:{self.root}"

    def file_for(self, row: CohortRow) -> Path | None:
        """The label file of a cohort case, or ``None`` when this source has none for it."""
        if self.root is None:
            candidates = [row.truth_dir / LABEL_FILES["gt"]]
        else:
            names = [row.case_id] + ([row.study_uid] if row.study_uid else [])
            candidates = [self.root / n / LABEL_FILES[self.kind] for n in names]
        return next((p for p in candidates if p.is_file()), None)


@dataclass(frozen=True)
class TerritorySource:
    """``--territory``: the cohort's artery masks (``root`` None) or a prediction folder's ``arteries.nii.gz``."""

    root: Path | None = None

    @property
    def spec(self) -> str:
        return "gt" if self.root is None else f"pred:{self.root}"

    def file_for(self, row: CohortRow) -> Path | None:
        if self.root is None:
            candidates = [row.truth_dir / TERRITORY_FILE]
        else:
            names = [row.case_id] + ([row.study_uid] if row.study_uid else [])
            candidates = [self.root / n / TERRITORY_FILE for n in names]
        return next((p for p in candidates if p.is_file()), None)


@dataclass(frozen=True)
class SegmenterCase:
    """One training case: its files and which label source it used.

    Attributes:
        case_id: the cohort's case id.
        ct_path: ``ct.nii.gz`` or a DICOM study folder.
        territory_path: artery territory (0/1) on the CT's grid.
        label_path: emboli mask or label map (nonzero = embolus) on the CT's grid.
        label_kind: ``gt``, ``pseudo`` or ``corrected``.
        label_spec: the ``--labels`` entry that supplied it (``datastore:DIR`` for a datastore case).
        study_uid: the cohort's StudyInstanceUID (RSPECT layout), else empty.
    """

    case_id: str
    ct_path: Path
    territory_path: Path
    label_path: Path
    label_kind: LabelKind
    label_spec: str
    study_uid: str = ""


def parse_label_source(text: str) -> LabelSource:
    """``gt`` | ``pseudo:DIR`` | ``corrected:DIR`` -> :class:`LabelSource` (the folder must exist)."""
    kind, sep, rest = text.partition(":")
    if kind not in LABEL_KINDS:
        raise ValueError(f"label source must be gt, pseudo:DIR or corrected:DIR, got {text!r}")
    if kind == "gt":
        if sep:
            raise ValueError(f"label source gt takes no folder, got {text!r}")
        return LabelSource("gt")
    if not rest:
        raise ValueError(f"label source {kind} needs a folder: {kind}:DIR, got {text!r}")
    root = Path(rest)
    if not root.is_dir():
        raise InputError(root, f"{kind} label folder not found")
    return LabelSource(kind, root)


def parse_territory_source(text: str) -> TerritorySource:
    """``gt`` | ``pred:DIR`` -> :class:`TerritorySource` (the folder must exist)."""
    if text == "gt":
        return TerritorySource()
    kind, _, rest = text.partition(":")
    if kind != "pred" or not rest:
        raise ValueError(f"territory source must be gt or pred:DIR, got {text!r}")
    root = Path(rest)
    if not root.is_dir():
        raise InputError(root, "territory (prediction) folder not found")
    return TerritorySource(root)


def default_territory(labels: Sequence[LabelSource]) -> TerritorySource:
    """``pred:DIR`` of the first pseudo-mask source (the territory its pseudo-masks were made in), else ``gt``."""
    pseudo = next((s for s in labels if s.kind == "pseudo"), None)
    return TerritorySource(pseudo.root) if pseudo is not None else TerritorySource()


def resolve_cases(cohort_dir: str | Path, labels: Sequence[LabelSource],
                  territory: TerritorySource) -> list[SegmenterCase]:
    """The cohort's cases with their CT, territory and highest-precedence label file, in ``cohort.csv`` order.

    Cases lacking a CT, a territory or any label are skipped with a warning.

    Raises:
        InputError: no case is left.
        ValueError: no label source given.
    """
    if not labels:
        raise ValueError("at least one label source is needed (gt, pseudo:DIR or corrected:DIR)")
    cases = []
    for row in read_cohort(cohort_dir):
        if row.ct_path is None:
            log.warning("%s: skipped (no CT)", row.case_id)
            continue
        territory_path = territory.file_for(row)
        if territory_path is None:
            log.warning("%s: skipped (no %s in %s)", row.case_id, TERRITORY_FILE, territory.spec)
            continue
        found = next(((s, p) for s in labels if (p := s.file_for(row)) is not None), None)
        if found is None:
            log.warning("%s: skipped (no label in %s)", row.case_id, ", ".join(s.spec for s in labels))
            continue
        source, label_path = found
        cases.append(SegmenterCase(row.case_id, row.ct_path, territory_path, label_path, source.kind, source.spec,
                                   row.study_uid))
    if not cases:
        raise InputError(cohort_dir, f"no case with a CT, a territory ({territory.spec}) and a label "
                                     f"({', '.join(s.spec for s in labels)})")
    counts = {k: sum(c.label_kind == k for c in cases) for k in LABEL_KINDS}
    log.info("%d cases: %s", len(cases), ", ".join(f"{n} {k}" for k, n in counts.items() if n))
    return cases


def datastore_cases(root: str | Path, territories: Mapping[str, Path] | None = None) -> list[SegmenterCase]:
    """Every case of a training datastore with its image, latest final mask and territory, by case id.

    Args:
        root: the datastore folder (read only: it is opened without creating or cleaning anything).
        territories: case id -> territory file, used when an export holds no ``arteries`` mask.

    Raises:
        InputError: not a datastore.
    """
    from PELabelUpLib.datastore import Datastore

    store = Datastore(root, create=False, clean_on_open=False)
    spec = f"datastore:{root}"
    cases = []
    for final in store.final_labels():
        territory = final.original_masks.get("arteries") or (territories or {}).get(final.case_id)
        if territory is None:
            log.warning("%s: datastore case skipped (no arteries mask exported, none in the cohort)", final.case_id)
            continue
        cases.append(SegmenterCase(final.case_id, final.image_path, Path(territory), final.mask_path, "corrected",
                                   spec))
    log.info("%d datastore cases (latest final masks)", len(cases))
    return cases


def merge_datastore(cohort_cases: Sequence[SegmenterCase], stored: Sequence[SegmenterCase]) -> list[SegmenterCase]:
    """Cohort cases, each replaced by the datastore case of its id (or StudyInstanceUID); then the datastore
    cases outside the cohort, by case id."""
    by_id = {c.case_id: c for c in stored}
    merged = []
    for case in cohort_cases:
        key = case.case_id if case.case_id in by_id else case.study_uid if case.study_uid in by_id else None
        merged.append(by_id.pop(key) if key is not None else case)
    return merged + sorted(by_id.values(), key=lambda c: c.case_id)
