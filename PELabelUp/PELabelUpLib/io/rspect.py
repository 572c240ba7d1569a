"""Write the RSNA RSPECT layout: ``train/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm`` + ``train.csv``.

Identifiers are 12 lowercase hexadecimal characters (``00268ff88746``), the same in folder names, file names,
the DICOM headers (StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID and the file meta) and ``train.csv``,
as in the RSNA STR Pulmonary Embolism Detection data. Public pipelines that take the SOP id as the last 12
characters of the file name before ``.dcm``, sort slices by ImagePositionPatient z and read SliceThickness
and Exposure therefore run unchanged on what is written here.

``train.csv`` has one row per slice, columns :data:`RSPECT_COLUMNS` in the order of the Kaggle file
(``pe_present_on_image`` is per slice; every other label is per study and repeats on each of its rows).
The order was checked against public notebooks that print the Kaggle ``train.csv`` columns.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..volume import CTVolume
from .dicom_writer import write_dicom_series
from .validate import RSPECT_ID

log = logging.getLogger(__name__)

ID_COLUMNS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
IMAGE_LABEL_COLUMN = "pe_present_on_image"
RSPECT_COLUMNS = (
    *ID_COLUMNS,
    IMAGE_LABEL_COLUMN,
    "negative_exam_for_pe",
    "qa_motion",
    "qa_contrast",
    "flow_artifact",
    "rv_lv_ratio_gte_1",
    "rv_lv_ratio_lt_1",
    "leftsided_pe",
    "chronic_pe",
    "true_filling_defect_not_pe",
    "rightsided_pe",
    "acute_and_chronic_pe",
    "central_pe",
    "indeterminate",
)
STUDY_LABEL_COLUMNS = tuple(c for c in RSPECT_COLUMNS[4:])
INFORMATIONAL_COLUMNS = ("qa_motion", "qa_contrast", "flow_artifact", "true_filling_defect_not_pe")
EXAM_LABEL_COLUMNS = tuple(c for c in STUDY_LABEL_COLUMNS if c not in INFORMATIONAL_COLUMNS)
PE_EXAM_COLUMNS = tuple(c for c in EXAM_LABEL_COLUMNS if c not in ("negative_exam_for_pe", "indeterminate"))
MIN_AXIAL_COSINE = 0.5  # |z component| of the slice axis: pipelines sort slices by ImagePositionPatient z


def new_rspect_id(rng: np.random.Generator) -> str:
    """A new RSPECT identifier: 12 lowercase hex characters (48 random bits), deterministic from ``rng``."""
    return f"{int(rng.integers(0, 2**48)):012x}"


@dataclass(frozen=True)
class RspectIds:
    """The identifiers of one RSPECT study: study, series and one SOP id per slice (k order)."""

    study_uid: str
    series_uid: str
    sop_uids: tuple[str, ...]

    @classmethod
    def new(cls, rng: np.random.Generator, n_slices: int) -> RspectIds:
        """Fresh distinct ids, deterministic from ``rng``."""
        seen: set[str] = set()
        ids: list[str] = []
        while len(ids) < n_slices + 2:
            value = new_rspect_id(rng)
            if value not in seen:
                seen.add(value)
                ids.append(value)
        return cls(study_uid=ids[0], series_uid=ids[1], sop_uids=tuple(ids[2:]))

    def check(self, n_slices: int) -> None:
        bad = [v for v in (self.study_uid, self.series_uid, *self.sop_uids) if not RSPECT_ID.match(v)]
        if bad:
            raise ValueError(f"RSPECT ids must be 12 lowercase hex characters, got {bad[0]!r}")
        if len(self.sop_uids) != n_slices or len(set(self.sop_uids)) != n_slices:
            raise ValueError(
                f"need {n_slices} distinct SOP ids, got {len(set(self.sop_uids))} distinct of {len(self.sop_uids)}"
            )


def complete_study_labels(
    study_labels: Mapping[str, int | bool], slice_labels: Sequence[bool]
) -> dict[str, int]:
    """Every study-level column as 0/1, checked against the RSPECT label rules.

    Missing columns are 0, except ``negative_exam_for_pe``, which defaults to 1 when no slice is positive
    and the study is not indeterminate. The rules (those the Kaggle challenge imposed on exam labels):

    - a study is exactly one of negative, indeterminate or PE-positive; positive <=> some slice positive;
    - a PE-positive study has exactly one of ``rv_lv_ratio_gte_1``/``rv_lv_ratio_lt_1``, at least one of
      ``central_pe``/``leftsided_pe``/``rightsided_pe`` and at most one of ``chronic_pe``/``acute_and_chronic_pe``;
    - a negative or indeterminate study has every PE column 0.

    Raises:
        ValueError: unknown column, a value other than 0/1, or a broken rule (naming it).
    """
    unknown = sorted(set(study_labels) - set(STUDY_LABEL_COLUMNS))
    if unknown:
        raise ValueError(f"unknown study label(s) {unknown}; known: {', '.join(STUDY_LABEL_COLUMNS)}")
    labels: dict[str, int] = {}
    for column, value in study_labels.items():
        if isinstance(value, str) or value not in (0, 1):
            raise ValueError(f"study label {column} must be 0 or 1, got {value!r}")
        labels[column] = int(value)
    any_positive = bool(np.any(np.asarray(slice_labels, dtype=bool)))
    labels.setdefault("indeterminate", 0)
    labels.setdefault("negative_exam_for_pe", int(not any_positive and not labels["indeterminate"]))
    full = {c: labels.get(c, 0) for c in STUDY_LABEL_COLUMNS}
    negative, indeterminate = full["negative_exam_for_pe"], full["indeterminate"]
    if negative and indeterminate:
        raise ValueError("a study cannot be both negative_exam_for_pe and indeterminate")
    if any_positive and (negative or indeterminate):
        raise ValueError(
            "a study with a positive slice must have negative_exam_for_pe = 0 and indeterminate = 0"
        )
    if not any_positive and not (negative or indeterminate):
        raise ValueError(
            "a PE-positive study (negative_exam_for_pe = 0, indeterminate = 0) needs at least one positive slice"
        )
    if any_positive:
        if full["rv_lv_ratio_gte_1"] + full["rv_lv_ratio_lt_1"] != 1:
            raise ValueError(
                "a PE-positive study needs exactly one of rv_lv_ratio_gte_1 / rv_lv_ratio_lt_1 = 1"
            )
        if not (full["central_pe"] or full["leftsided_pe"] or full["rightsided_pe"]):
            raise ValueError(
                "a PE-positive study needs at least one of central_pe / leftsided_pe / rightsided_pe = 1"
            )
        if full["chronic_pe"] and full["acute_and_chronic_pe"]:
            raise ValueError("chronic_pe and acute_and_chronic_pe cannot both be 1")
    else:
        set_pe = [c for c in PE_EXAM_COLUMNS if full[c]]
        if set_pe:
            raise ValueError(f"a negative or indeterminate study must have {', '.join(set_pe)} = 0")
    return full


def write_rspect_study(
    root: str | Path,
    volume: CTVolume,
    slice_labels: Sequence[bool],
    study_labels: Mapping[str, int | bool],
    *,
    rng: np.random.Generator | None = None,
    ids: RspectIds | None = None,
) -> list[dict[str, str | int]]:
    """Write one study as ``root/train/<study>/<series>/<sop>.dcm`` and return its ``train.csv`` rows.

    Args:
        root: dataset root (``train/`` is created under it); ``train.csv`` is *not* written here, pass the
            rows of every study to :func:`write_train_csv` (or :func:`append_train_csv`).
        volume: HU ``(Z, Y, X)``; slice ``hu[k]`` gets ``ids.sop_uids[k]`` and ``slice_labels[k]``. Its slice
            axis must be roughly axial (|z component| >= 0.5), as pipelines sort by ImagePositionPatient z.
        slice_labels: ``pe_present_on_image`` per slice, length Z.
        study_labels: study-level columns (see :func:`complete_study_labels` for defaults and rules).
        rng: source of new ids when ``ids`` is None (a fresh unseeded generator when both are None).
        ids: explicit ids (12 lowercase hex characters each).

    Returns:
        one dict per slice in k order, keys :data:`RSPECT_COLUMNS` in order, labels as int 0/1.
    """
    n_slices = volume.hu.shape[0]
    if len(slice_labels) != n_slices:
        raise ValueError(f"{len(slice_labels)} slice labels for a volume of {n_slices} slices")
    k_axis_z = float(volume.geometry.direction_matrix[2, 2])
    if abs(k_axis_z) < MIN_AXIAL_COSINE:
        raise ValueError(
            f"slice axis z component {k_axis_z:.3f}: RSPECT slices must be roughly axial (|z| >= {MIN_AXIAL_COSINE})"
        )
    labels = complete_study_labels(study_labels, slice_labels)
    ids = ids or RspectIds.new(rng if rng is not None else np.random.default_rng(), n_slices)
    ids.check(n_slices)
    folder = Path(root) / "train" / ids.study_uid / ids.series_uid
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} exists already and is not empty")
    write_dicom_series(
        volume,
        folder,
        study_uid=ids.study_uid,
        series_uid=ids.series_uid,
        sop_uids=ids.sop_uids,
        patient_id=ids.study_uid,
        patient_name="",
        series_description="CTPA",
        file_names=[f"{sop}.dcm" for sop in ids.sop_uids],
    )
    rows: list[dict[str, str | int]] = []
    for sop, positive in zip(ids.sop_uids, slice_labels, strict=True):
        row: dict[str, str | int] = {
            "StudyInstanceUID": ids.study_uid,
            "SeriesInstanceUID": ids.series_uid,
            "SOPInstanceUID": sop,
        }
        row[IMAGE_LABEL_COLUMN] = int(bool(positive))
        row.update(labels)
        rows.append({c: row[c] for c in RSPECT_COLUMNS})
    log.info(
        "wrote RSPECT study %s (%d slices, %d positive)",
        ids.study_uid,
        n_slices,
        sum(map(bool, slice_labels)),
    )
    return rows


def _check_rows(rows: Sequence[Mapping[str, str | int]]) -> None:
    for n, row in enumerate(rows):
        missing = [c for c in RSPECT_COLUMNS if c not in row]
        if missing:
            raise ValueError(f"row {n} lacks column(s) {', '.join(missing)}")
        for c in ID_COLUMNS:
            if not RSPECT_ID.match(str(row[c])):
                raise ValueError(f"row {n}: {c} {row[c]!r} is not an RSPECT id (12 lowercase hex characters)")
        for c in RSPECT_COLUMNS[3:]:
            if str(row[c]) not in ("0", "1"):
                raise ValueError(f"row {n}: {c} must be 0 or 1, got {row[c]!r}")
    sops = [str(r["SOPInstanceUID"]) for r in rows]
    if len(set(sops)) != len(sops):
        dup = next(s for s in sops if sops.count(s) > 1)
        raise ValueError(f"SOPInstanceUID {dup} appears on more than one row")


def read_train_rows(csv_path: Path) -> list[dict[str, str]]:
    """Rows of a ``train.csv`` as text dicts; the header must hold every :data:`RSPECT_COLUMNS` name."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as stream:  # tolerate a spreadsheet BOM
            reader = csv.DictReader(stream)
            header = reader.fieldnames or []
            if not header:
                raise InputError(csv_path, "empty csv file (no header)")
            missing = [c for c in RSPECT_COLUMNS if c not in header]
            if missing:
                raise InputError(csv_path, f"missing column(s) {', '.join(missing)}")
            return [dict(r) for r in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(csv_path, f"unreadable csv ({type(exc).__name__}: {exc})") from None


def write_train_csv(
    root: str | Path,
    rows: Sequence[Mapping[str, str | int]],
    *,
    append: bool = False,
    csv_name: str = "train.csv",
) -> Path:
    """Write ``rows`` to ``root/train.csv`` (columns :data:`RSPECT_COLUMNS`), atomically.

    The file is written to a temporary name in ``root`` and renamed over the old one, so a reader never sees
    half a file. With ``append=True`` the existing rows are kept first (one writer at a time; a SOP id
    already present is a ``ValueError``).
    """
    out = Path(root) / csv_name
    existing: list[dict[str, str]] = read_train_rows(out) if append and out.exists() else []
    combined = [*existing, *rows]
    _check_rows(combined)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as stream:
            writer = csv.DictWriter(
                stream, fieldnames=RSPECT_COLUMNS, extrasaction="ignore", lineterminator="\n"
            )
            writer.writeheader()
            writer.writerows(combined)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def append_train_csv(
    root: str | Path, rows: Sequence[Mapping[str, str | int]], *, csv_name: str = "train.csv"
) -> Path:
    """Append ``rows`` to ``root/train.csv`` (created when absent); see :func:`write_train_csv`."""
    return write_train_csv(root, rows, append=True, csv_name=csv_name)
