"""The segments of ``segmentation.seg.nrrd``: names, IDs, colours and DICOM/SNOMED CT terminology.

Codes (SNOMED CT, scheme ``SCT``), as listed in 3D Slicer's terminology contexts
(``SegmentationCategoryTypeModifier-DICOM-Master.json``):

- 55584005 "Embolus", category 49755003 "Morphologically Altered Structure" (also in Slicer's General
  Anatomy list), anatomic region 81040000 "Pulmonary artery";
- 81040000 "Pulmonary artery", category 123037004 "Anatomical Structure". Slicer's General Anatomy list has
  no pulmonary artery, so both entries use the DICOM master list context, which has both.

IDs, names, colours and entries are those of the Slicer review (:mod:`PELabelUpLib.mrml.terminology`), so a
file loaded into the review matches the segments it creates. Torch-free.
"""

from __future__ import annotations

import numpy as np

from ..io.seg_nrrd import Segment

CATEGORY_CONTEXT = "Segmentation category and type - DICOM master list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"
MORPHOLOGICALLY_ALTERED = ("SCT", "49755003", "Morphologically Altered Structure")
ANATOMICAL_STRUCTURE = ("SCT", "123037004", "Anatomical Structure")
EMBOLUS = ("SCT", "55584005", "Embolus")
PULMONARY_ARTERY = ("SCT", "81040000", "Pulmonary artery")
_NO_CODE = ("", "", "")


def terminology_entry(category: tuple[str, str, str], type_: tuple[str, str, str],
                      region: tuple[str, str, str] = _NO_CODE) -> str:
    """Slicer's 7-field entry ``context~category~type~typeModifier~anatomicContext~region~regionModifier``."""
    fields = [CATEGORY_CONTEXT, "^".join(category), "^".join(type_), "^".join(_NO_CODE),
              ANATOMIC_CONTEXT if region != _NO_CODE else "", "^".join(region), "^".join(_NO_CODE)]
    return "~".join(fields)


EMBOLUS_ENTRY = terminology_entry(MORPHOLOGICALLY_ALTERED, EMBOLUS, PULMONARY_ARTERY)
PULMONARY_ARTERY_ENTRY = terminology_entry(ANATOMICAL_STRUCTURE, PULMONARY_ARTERY)

PSEUDOMASK_SEGMENT = ("pe_pseudomask", "PE pseudo-mask", (0.0, 0.9, 1.0), EMBOLUS_ENTRY)
SEGMENTER_SEGMENT = ("pe_segmenter", "PE segmenter", (0.35, 1.0, 0.25), EMBOLUS_ENTRY)
ARTERIES_SEGMENT = ("pulmonary_arteries", "Pulmonary arteries", (0.85, 0.55, 0.95), PULMONARY_ARTERY_ENTRY)
SOURCE_TAG = "PELabelUp.Source"


def analysis_segments(pseudomask: np.ndarray, segmentation: np.ndarray, arteries: np.ndarray, *,
                      segmentation_source: str) -> list[Segment]:
    """The three segments of an analysis, ``(Z, Y, X)`` 0/1 masks on the input grid, in file order.

    ``segmentation_source`` (``segmenter`` or why it is a copy of the pseudo-mask) is stored as the
    ``PELabelUp.Source`` tag of the "PE segmenter" segment.
    """
    sources = ("pseudomask", segmentation_source, "artery model")
    masks = (pseudomask, segmentation, arteries)
    return [Segment(segment_id=sid, name=name, mask=np.asarray(mask) != 0, color=color, terminology=entry,
                    tags={SOURCE_TAG: source})
            for (sid, name, color, entry), mask, source in
            zip((PSEUDOMASK_SEGMENT, SEGMENTER_SEGMENT, ARTERIES_SEGMENT), masks, sources, strict=True)]
