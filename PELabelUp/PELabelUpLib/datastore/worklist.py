"""The "Next case" worklist: studies waiting for review, most uncertain first.

A worklist folder holds the studies and, optionally, their analysis outputs::

    worklist/
      <study>.nii.gz            a study as an image file (.nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd);
                                its id is the file name without the extension
      <study>/                  a study as a DICOM folder (any depth); its id is the folder name
      analysis/<study>/result.json
                                optional: what ``pelabelup analyze`` writes for that study
                                (``pe_probability`` in [0, 1]); another folder can be given instead

Entries whose names start with ``.`` or ``_``, the ``analysis`` folder (also when the analyses are read from
another folder), folders without any file, and other files (CSV, JSON, a detached header's ``.raw``...) are
not studies. A study counts as reviewed once its id is a case of the
datastore (exported at least once).

Order: studies with an analysis come first, the most uncertain first -- smallest ``|pe_probability - 0.5|``
-- compared to :data:`RANK_DECIMALS` decimals (so 0.3 and 0.7 tie despite float rounding), ties broken by
study id; studies without an analysis follow, by study id. Unanalysed studies go last
because the order is the model's uncertainty, which they do not have yet, and because a review corrects the
model's masks, which they lack; once analysed they take their place in the order.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..io.image_files import image_extension
from .store import Datastore

log = logging.getLogger(__name__)

ANALYSIS_DIR = "analysis"
RESULT_JSON = "result.json"
RANK_DECIMALS = 9


@dataclass(frozen=True)
class WorklistStudy:
    """One study of a worklist.

    Attributes:
        study_id: the id the study is exported under (file name without extension, or folder name).
        path: the image file or DICOM folder (what :func:`~PELabelUpLib.io.load_ct` takes).
        pe_probability: the analysis's study probability of PE, or ``None`` when not analysed.
        result_path: the analysis's ``result.json``, or ``None``.
    """

    study_id: str
    path: Path
    pe_probability: float | None
    result_path: Path | None

    @property
    def uncertainty_rank(self) -> float:
        """``|pe_probability - 0.5|`` rounded to :data:`RANK_DECIMALS` (0 = most uncertain); ``inf`` when not
        analysed."""
        return math.inf if self.pe_probability is None else round(abs(self.pe_probability - 0.5), RANK_DECIMALS)


class Worklist:
    """The studies of a worklist folder (layout and order in the module doc).

    Args:
        folder: the worklist folder.
        analysis_dir: where the per-study analysis folders are; ``<folder>/analysis`` by default.
    """

    def __init__(self, folder: str | Path, *, analysis_dir: str | Path | None = None) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise InputError(self.folder, "worklist folder not found")
        self.analysis_dir = Path(analysis_dir) if analysis_dir is not None else self.folder / ANALYSIS_DIR

    def studies(self) -> list[WorklistStudy]:
        """Every study, in review order (most uncertain first, unanalysed last, ties by study id)."""
        found: dict[str, Path] = {}
        for entry in sorted(self.folder.iterdir()):
            study_id = _study_id(entry, self.analysis_dir)
            if study_id is None:
                continue
            if study_id in found:
                raise InputError(entry, f"study id {study_id!r} also names {found[study_id].name}")
            found[study_id] = entry
        studies = [self._with_analysis(study_id, path) for study_id, path in found.items()]
        return sorted(studies, key=lambda s: (s.pe_probability is None, s.uncertainty_rank, s.study_id))

    def pending(self, datastore: Datastore, *, skip: Iterable[str] = ()) -> list[WorklistStudy]:
        """The studies not yet exported to ``datastore`` (nor in ``skip``), in review order."""
        done = datastore.case_ids() | set(skip)
        return [s for s in self.studies() if s.study_id not in done]

    def next_unreviewed(self, datastore: Datastore, *, skip: Iterable[str] = ()) -> WorklistStudy | None:
        """The next study to review: the first of :meth:`pending`, or ``None`` when all are done.

        ``skip`` names studies to pass over (e.g. opened and left without export in this session).
        """
        pending = self.pending(datastore, skip=skip)
        if not pending:
            log.info("worklist %s: every study is reviewed", self.folder)
            return None
        return pending[0]

    def _with_analysis(self, study_id: str, path: Path) -> WorklistStudy:
        result_path = self.analysis_dir / study_id / RESULT_JSON
        if not result_path.is_file():
            return WorklistStudy(study_id, path, None, None)
        return WorklistStudy(study_id, path, read_pe_probability(result_path), result_path)


def read_pe_probability(result_path: Path) -> float:
    """``pe_probability`` of an analysis's ``result.json`` (a finite number in [0, 1]); else raise."""
    try:
        record = json.loads(result_path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(result_path, f"cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError(result_path, f"not valid JSON: {exc.msg} (line {exc.lineno})") from None
    value = record.get("pe_probability") if isinstance(record, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(result_path, f"pe_probability must be a finite number, got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise InputError(result_path, f"pe_probability must lie in [0, 1], got {value!r}")
    return float(value)


def _study_id(entry: Path, analysis_dir: Path) -> str | None:
    """The study id of a worklist entry, or ``None`` when the entry is not a study."""
    if entry.name.startswith((".", "_")):
        return None
    if entry.is_dir():
        if entry.name == ANALYSIS_DIR or entry.resolve() == analysis_dir.resolve() or not _holds_a_file(entry):
            return None
        return entry.name
    ext = image_extension(entry)
    return entry.name[: -len(ext)] if ext and entry.is_file() else None


def _holds_a_file(folder: Path) -> bool:
    for _here, _subfolders, files in os.walk(folder):
        if any(not name.startswith(".") for name in files):
            return True
    return False
