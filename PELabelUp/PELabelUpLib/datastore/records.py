"""What the datastore's reading API returns, and how index rows become these records."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..geometry import Geometry
from .paths import to_path

LabelDecision = Literal["confirmed", "changed"]
LABEL_DECISIONS: tuple[LabelDecision, ...] = ("confirmed", "changed")


@dataclass(frozen=True)
class ExportRecord:
    """One "Export to training" of one case (a row of the index, with absolute paths).

    Attributes:
        case_id: the case's id.
        version: 1, 2, ... per case; the highest is the case's current final label.
        image_hash: SHA-256 of the image's HU and grid (:func:`~.content.image_hash`).
        image_path: the stored image (NIfTI, HU), shared by every export of the same image.
        image_geometry: the image's exact grid as exported (LPS mm; the NIfTI file holds it as float32).
        final_mask_path: the corrected mask (NIfTI, uint8 labels, 0 = background) on the image's grid.
        final_seg_nrrd_path: the same as a Slicer ``.seg.nrrd``, or ``None`` when it was not written.
        original_masks: the model's masks as given, by kind (``pseudomask``, ``segmentation``, ``arteries``).
        model_versions: the models that produced the original masks (free-form, as exported).
        reviewer: who corrected the masks.
        exported_utc: when, UTC ISO 8601.
        study_label: True when the reviewer's study label is "PE present".
        label_decision: ``confirmed`` (the model's study label kept) or ``changed``.
        folder: the export's folder ``cases/<case_id>/v<version>``.
    """

    case_id: str
    version: int
    image_hash: str
    image_path: Path
    image_geometry: Geometry
    final_mask_path: Path
    final_seg_nrrd_path: Path | None
    original_masks: dict[str, Path]
    model_versions: dict[str, Any]
    reviewer: str
    exported_utc: str
    study_label: bool
    label_decision: LabelDecision
    folder: Path

    def files(self) -> list[Path]:
        """Every file this export refers to (image, final mask(s), original masks)."""
        out = [self.image_path, self.final_mask_path, *self.original_masks.values()]
        return out + ([self.final_seg_nrrd_path] if self.final_seg_nrrd_path else [])


@dataclass(frozen=True)
class FinalLabel:
    """A training pair for fine-tuning: the image and its current (latest) final mask.

    Attributes:
        case_id, version: the case and the version of its latest export.
        image_path: the image (NIfTI, HU, ``(Z, Y, X)`` once read).
        mask_path: the final mask (NIfTI, uint8, same grid); it takes precedence over ``original_masks``.
        original_masks: the model's masks of that export, by kind.
        study_label: the reviewer's study label (True: PE present).
    """

    case_id: str
    version: int
    image_path: Path
    mask_path: Path
    original_masks: dict[str, Path]
    study_label: bool


def geometry_to_json(geometry: Geometry) -> str:
    """Exact JSON of a grid (Python floats survive a JSON round trip bit for bit)."""
    return json.dumps({"size": list(geometry.size), "spacing_mm": list(geometry.spacing_mm),
                       "origin_mm": list(geometry.origin_mm), "direction": list(geometry.direction)})


def geometry_from_json(text: str) -> Geometry:
    data = json.loads(text)
    return Geometry(size=tuple(data["size"]), spacing_mm=tuple(data["spacing_mm"]),
                    origin_mm=tuple(data["origin_mm"]), direction=tuple(data["direction"]))


def record_from_row(root: Path, row: sqlite3.Row) -> ExportRecord:
    """An :class:`ExportRecord` from an ``exports`` row joined with its image (``image_path``, ``geometry_json``)."""
    originals = json.loads(row["original_masks_json"])
    return ExportRecord(
        case_id=row["case_id"],
        version=int(row["version"]),
        image_hash=row["image_hash"],
        image_path=to_path(root, row["image_path"]),
        image_geometry=geometry_from_json(row["geometry_json"]),
        final_mask_path=to_path(root, row["final_mask_path"]),
        final_seg_nrrd_path=to_path(root, row["final_seg_nrrd_path"]) if row["final_seg_nrrd_path"] else None,
        original_masks={kind: to_path(root, rel) for kind, rel in sorted(originals.items())},
        model_versions=json.loads(row["model_versions_json"]),
        reviewer=row["reviewer"],
        exported_utc=row["exported_utc"],
        study_label=bool(row["study_label"]),
        label_decision=row["label_decision"],
        folder=to_path(root, row["folder"]),
    )


RECORD_QUERY = """
SELECT e.*, i.path AS image_path, i.geometry_json AS geometry_json
FROM exports AS e JOIN images AS i ON i.image_hash = e.image_hash
"""
LATEST_FILTER = "WHERE e.version = (SELECT MAX(version) FROM exports WHERE case_id = e.case_id)"
