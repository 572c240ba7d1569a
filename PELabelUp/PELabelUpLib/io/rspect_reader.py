"""Read an RSPECT dataset root (``train.csv`` + ``train/<study>/<series>/<sop>.dcm``), checking csv against files.

Refusals (:class:`InputError` naming the csv or the file, on one line): csv or ``train/`` absent, a missing
column, an id that is not 12 lowercase hex characters, a label other than 0/1, an exam-level label that
differs between rows of one study, a SOP id on two rows, a row whose file is missing, a ``.dcm`` file with
no row, a file name that is not ``<SOPInstanceUID>.dcm``, and a DICOM header whose ids disagree with the
folders and the csv. The informational columns (``qa_*``, ``flow_artifact``, ``true_filling_defect_not_pe``)
may vary within a study: the study value is then their maximum.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..volume import CTVolume
from .dicom_reader import load_dicom
from .dicom_scan import SliceHeader, read_header
from .rspect import EXAM_LABEL_COLUMNS, IMAGE_LABEL_COLUMN, STUDY_LABEL_COLUMNS, read_train_rows
from .validate import RSPECT_ID, check_binary_label, check_exists, check_rspect_id

log = logging.getLogger(__name__)


@dataclass
class RspectStudy:
    """One series of an RSPECT study with its labels.

    Attributes:
        study_uid, series_uid: 12-character RSPECT ids.
        folder: ``root/train/<study_uid>/<series_uid>``.
        sop_uids: SOP ids in slice order (sorted along the slice normal, as :func:`load_ct` orders k) when
            read with ``sort_slices=True``, else in csv order.
        slice_labels: ``pe_present_on_image`` as a ``bool`` array, same order as ``sop_uids``.
        study_labels: every study-level column -> 0/1.
    """

    study_uid: str
    series_uid: str
    folder: Path
    sop_uids: tuple[str, ...]
    slice_labels: np.ndarray
    study_labels: dict[str, int]

    @property
    def files(self) -> list[Path]:
        """The DICOM files, in the order of ``sop_uids``."""
        return [self.folder / f"{sop}.dcm" for sop in self.sop_uids]

    @property
    def n_positive_slices(self) -> int:
        return int(self.slice_labels.sum())

    @property
    def is_pe_positive(self) -> bool:
        return not self.study_labels["negative_exam_for_pe"] and not self.study_labels["indeterminate"]

    def load(self, *, allow_gaps: bool = False) -> CTVolume:
        """The CT volume (see :func:`load_ct`), with ``meta["slice_labels"]`` aligned to its k axis
        (``None`` for slices filled in a gap) and ``meta["study_labels"]``."""
        volume = load_dicom(self.folder, series_uid=self.series_uid, allow_gaps=allow_gaps)
        by_sop = dict(zip(self.sop_uids, self.slice_labels.tolist(), strict=True))
        loaded = [s for s in volume.meta["sop_uids"] if s is not None]
        if sorted(loaded) != sorted(self.sop_uids):
            raise InputError(
                self.folder,
                f"the loaded series holds {len(loaded)} slices, train.csv lists {len(self.sop_uids)}",
            )
        volume.meta["slice_labels"] = [
            None if s is None else bool(by_sop[s]) for s in volume.meta["sop_uids"]
        ]
        volume.meta["study_labels"] = dict(self.study_labels)
        return volume


def _label_rows(
    csv_path: Path, rows: list[dict[str, str]], wanted: set[str] | None
) -> dict[tuple[str, str], dict[str, Any]]:
    """Group csv rows by (study, series), validating ids, labels and study-level constancy."""
    studies: dict[tuple[str, str], dict[str, Any]] = {}
    sop_line: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        study = check_rspect_id(
            csv_path, (row["StudyInstanceUID"] or "").strip(), f"line {line}: StudyInstanceUID"
        )
        if wanted is not None and study not in wanted:
            continue
        series = check_rspect_id(
            csv_path, (row["SeriesInstanceUID"] or "").strip(), f"line {line}: SeriesInstanceUID"
        )
        sop = check_rspect_id(csv_path, (row["SOPInstanceUID"] or "").strip(), f"line {line}: SOPInstanceUID")
        if sop in sop_line:
            raise InputError(csv_path, f"line {line}: SOPInstanceUID {sop} already on line {sop_line[sop]}")
        sop_line[sop] = line
        image_label = check_binary_label(
            csv_path, row[IMAGE_LABEL_COLUMN] or "", f"line {line}, {IMAGE_LABEL_COLUMN}"
        )
        labels = {
            c: check_binary_label(csv_path, row[c] or "", f"line {line}, {c}") for c in STUDY_LABEL_COLUMNS
        }
        entry = studies.get((study, series))
        if entry is None:
            studies[(study, series)] = {
                "line": line,
                "labels": labels,
                "sops": [sop],
                "slice_labels": [image_label],
                "lines": [line],
            }
            continue
        for c in EXAM_LABEL_COLUMNS:
            if labels[c] != entry["labels"][c]:
                raise InputError(
                    csv_path,
                    f"line {line}: {c} = {labels[c]} differs from {entry['labels'][c]} on line {entry['line']} of the same study {study}",
                )
        for c in STUDY_LABEL_COLUMNS:
            entry["labels"][c] = max(entry["labels"][c], labels[c])
        entry["sops"].append(sop)
        entry["slice_labels"].append(image_label)
        entry["lines"].append(line)
    return studies


def _files_on_disk(train: Path, wanted: set[str] | None) -> set[tuple[str, str, str]]:
    """(study, series, sop) of every ``.dcm`` under ``train/<study>/<series>/``."""
    found: set[tuple[str, str, str]] = set()
    for study_dir in sorted(p for p in train.iterdir() if p.is_dir()):
        if wanted is not None and study_dir.name not in wanted:
            continue
        for entry in sorted(study_dir.iterdir()):
            if entry.is_file() and entry.suffix.lower() == ".dcm":
                raise InputError(
                    entry, "DICOM file directly in a study folder: expected train/<study>/<series>/<sop>.dcm"
                )
            if not entry.is_dir():
                continue
            for f in sorted(entry.iterdir()):
                if not (f.is_file() and f.suffix.lower() == ".dcm"):
                    continue
                if f.suffix != ".dcm" or not RSPECT_ID.match(f.stem):
                    raise InputError(
                        f, "file name is not <SOPInstanceUID>.dcm with a 12-character lowercase hex id"
                    )
                found.add((study_dir.name, entry.name, f.stem))
    return found


def _sorted_by_position(folder: Path, study: str, series: str, sops: list[str]) -> list[int]:
    """Indices that order ``sops`` along the slice normal; headers must repeat the folder/csv ids."""
    headers: list[SliceHeader] = [read_header(folder / f"{sop}.dcm") for sop in sops]
    for h, sop in zip(headers, sops, strict=True):
        for what, got, want in (
            ("StudyInstanceUID", h.study_uid, study),
            ("SeriesInstanceUID", h.series_uid, series),
            ("SOPInstanceUID", h.sop_uid, sop),
        ):
            if got != want:
                raise InputError(
                    h.path, f"header {what} {got!r} does not match the folder and train.csv id {want!r}"
                )
        if h.position is None or h.orientation is None:
            raise InputError(
                h.path, "missing ImagePositionPatient or ImageOrientationPatient: cannot order the slices"
            )
    iop = np.asarray(headers[0].orientation, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    along = [float(np.asarray(h.position) @ normal) for h in headers]
    return sorted(range(len(sops)), key=lambda i: (along[i], headers[i].instance_number or 0))


def read_rspect(
    root: str | Path,
    csv_name: str = "train.csv",
    *,
    sort_slices: bool = True,
    study_uids: Collection[str] | None = None,
) -> list[RspectStudy]:
    """Read and check an RSPECT dataset root.

    Args:
        root: folder holding ``csv_name`` and ``train/``.
        csv_name: the label file (``train.csv``).
        sort_slices: order each study's slices by position (reads every DICOM header); ``False`` keeps csv
            order and reads no DICOM file (fast, for summaries).
        study_uids: read only these studies (both csv rows and folders are filtered).

    Returns:
        one :class:`RspectStudy` per (study, series), in order of first appearance in the csv.

    Raises:
        InputError: see the module docstring.
    """
    base = check_exists(root)
    if not base.is_dir():
        raise InputError(base, "not a folder: an RSPECT root holds train.csv and train/")
    csv_path = base / csv_name
    if not csv_path.is_file():
        raise InputError(csv_path, "not found: an RSPECT root holds train.csv and train/")
    train = base / "train"
    if not train.is_dir():
        raise InputError(train, "folder not found: an RSPECT root holds train.csv and train/")
    wanted = set(study_uids) if study_uids is not None else None
    groups = _label_rows(csv_path, read_train_rows(csv_path), wanted)
    if not groups:
        raise InputError(csv_path, "no rows" + (" for the requested studies" if wanted is not None else ""))
    on_disk = _files_on_disk(train, wanted)
    expected = {
        (st, se, sop): line
        for (st, se), g in groups.items()
        for sop, line in zip(g["sops"], g["lines"], strict=True)
    }
    missing = sorted(set(expected) - on_disk, key=expected.__getitem__)
    if missing:
        st, se, sop = missing[0]
        more = f"; {len(missing)} listed files are missing in all" if len(missing) > 1 else ""
        raise InputError(
            train / st / se / f"{sop}.dcm",
            f"listed in {csv_name} (line {expected[missing[0]]}) but the file is missing{more}",
        )
    extra = sorted(on_disk - set(expected))
    if extra:
        st, se, sop = extra[0]
        more = f"; {len(extra)} files have no row in all" if len(extra) > 1 else ""
        raise InputError(train / st / se / f"{sop}.dcm", f"has no row in {csv_name}{more}")
    studies: list[RspectStudy] = []
    for (study, series), g in groups.items():
        folder = train / study / series
        order = (
            _sorted_by_position(folder, study, series, g["sops"])
            if sort_slices
            else list(range(len(g["sops"])))
        )
        studies.append(
            RspectStudy(
                study_uid=study,
                series_uid=series,
                folder=folder,
                sop_uids=tuple(g["sops"][i] for i in order),
                slice_labels=np.array([bool(g["slice_labels"][i]) for i in order], dtype=np.bool_),
                study_labels={c: g["labels"][c] for c in STUDY_LABEL_COLUMNS},
            )
        )
    log.info("%s: %d RSPECT series, %d slices", base, len(studies), len(expected))
    return studies


def is_rspect_root(path: Path, csv_name: str = "train.csv") -> bool:
    """True when ``path`` is a folder holding ``csv_name`` and a ``train/`` folder."""
    return path.is_dir() and (path / csv_name).is_file() and (path / "train").is_dir()
