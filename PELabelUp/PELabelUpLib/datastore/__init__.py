"""The training datastore (radiologists' corrected masks) and the review worklist.

Plain Python, SQLite and the project's io: no Qt, no Slicer. The Slicer module's "Export to training" calls
:meth:`Datastore.export`; ``pelabelup finetune --datastore DIR`` reads :meth:`Datastore.final_labels`;
"Next case" asks :meth:`Worklist.next_unreviewed`. Layout on disk: :mod:`.paths`; guarantees (atomic
export, versions kept, concurrent processes): :mod:`.store`; index schema: :mod:`.schema`.
"""

from __future__ import annotations

from .content import ORIGINAL_MASK_KINDS, MaskInput, OriginalMaskKind, image_hash
from .maintenance import CleanReport
from .paths import MAX_CASE_ID_LENGTH, check_case_id
from .records import LABEL_DECISIONS, ExportRecord, FinalLabel, LabelDecision
from .store import Datastore, StageHook
from .worklist import Worklist, WorklistStudy

__all__ = [
    "LABEL_DECISIONS",
    "MAX_CASE_ID_LENGTH",
    "ORIGINAL_MASK_KINDS",
    "CleanReport",
    "Datastore",
    "ExportRecord",
    "FinalLabel",
    "LabelDecision",
    "MaskInput",
    "OriginalMaskKind",
    "StageHook",
    "Worklist",
    "WorklistStudy",
    "check_case_id",
    "image_hash",
]
