"""A radiologist's corrected segment, from the scene into the training datastore.

The corrected segment is read back exactly on the CT's grid (:func:`~.segments.corrected_mask`) and handed,
with the CT and the analysis's original masks, to :meth:`PELabelUpLib.datastore.Datastore.export`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import slicer

from ..datastore import Datastore, ExportRecord, LabelDecision, MaskInput
from ..terminology import PE_PSEUDOMASK, PE_SEGMENTER, PULMONARY_ARTERIES
from ..volume import CTVolume
from .grid import geometry_of, volume_array
from .results import MASK_FILES, ReviewNodes
from .segments import corrected_mask

# datastore mask kind -> segment whose original file it is
ORIGINAL_KINDS = {"pseudomask": PE_PSEUDOMASK, "segmentation": PE_SEGMENTER, "arteries": PULMONARY_ARTERIES}


def ct_volume_of(volume_node: slicer.vtkMRMLScalarVolumeNode) -> CTVolume:
    """The node's voxels (a copy, HU ``(Z, Y, X)``) and grid (LPS mm) as a :class:`CTVolume`."""
    return CTVolume(hu=np.array(volume_array(volume_node)), geometry=geometry_of(volume_node),
                    source=volume_node.GetName(), meta={"format": "MRML"})


def original_mask_files(folder: str | Path) -> dict[str, Path]:
    """The analysis folder's original masks by datastore kind (``pseudomask``, ``segmentation``, ``arteries``)."""
    folder = Path(folder)
    files = {kind: folder / MASK_FILES[spec] for kind, spec in ORIGINAL_KINDS.items()}
    return {kind: path for kind, path in files.items() if path.is_file()}


def export_correction(
    datastore: Datastore,
    case_id: str,
    segmentation_node: slicer.vtkMRMLSegmentationNode,
    segment_id: str,
    reference_volume_node: slicer.vtkMRMLScalarVolumeNode,
    *,
    reviewer: str,
    study_label: bool,
    label_decision: LabelDecision,
    model_versions: Mapping[str, Any],
    original_masks: Mapping[str, MaskInput] | None = None,
    image: CTVolume | None = None,
    exported_at: datetime | None = None,
) -> ExportRecord:
    """Export one corrected segment as the case's next datastore version.

    Args:
        datastore: the training datastore.
        case_id: the case's datastore ID.
        segmentation_node, segment_id: the corrected segment.
        reference_volume_node: the CT the segment was drawn on; the mask is taken on its grid.
        reviewer, study_label, label_decision, model_versions, exported_at: as
            :meth:`~PELabelUpLib.datastore.Datastore.export` takes them.
        original_masks: the model's masks by kind (e.g. :func:`original_mask_files` of the analysis folder).
        image: the CT as the core loaded it; default: the node's voxels and grid (:func:`ct_volume_of`). The
            datastore identifies images by voxels and full-precision grid, so pass the core's volume when the
            same study is also exported from the command line.

    Returns:
        the datastore's :class:`~PELabelUpLib.datastore.ExportRecord`.
    """
    mask = corrected_mask(segmentation_node, segment_id, reference_volume_node)
    volume = image if image is not None else ct_volume_of(reference_volume_node)
    if volume.hu.shape != mask.shape:
        raise ValueError(f"image shape {volume.hu.shape} does not match the corrected mask's grid {mask.shape}")
    return datastore.export(case_id, volume, mask, reviewer=reviewer, study_label=study_label,
                            label_decision=label_decision, model_versions=model_versions,
                            original_masks=original_masks, exported_at=exported_at)


def export_review(datastore: Datastore, review: ReviewNodes, case_id: str, *, reviewer: str, study_label: bool,
                  label_decision: LabelDecision, segment_id: str = PE_PSEUDOMASK.segment_id,
                  image: CTVolume | None = None) -> ExportRecord:
    """:func:`export_correction` for a loaded review: its CT, its segment (the pseudo-mask by default), the
    analysis folder's original masks and the ``models`` of its ``result.json``."""
    models = review.record.raw.get("models") or []
    return export_correction(
        datastore, case_id, review.segmentation, segment_id, review.ct, reviewer=reviewer,
        study_label=study_label, label_decision=label_decision, model_versions={"models": models},
        original_masks=original_mask_files(review.record.folder), image=image)
