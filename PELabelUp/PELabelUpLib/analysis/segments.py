"""The segments of ``segmentation.seg.nrrd``: names, IDs, colours and terminology of :mod:`PELabelUpLib.terminology`.

They are the segments of the Slicer review (the same :class:`~PELabelUpLib.terminology.SegmentSpec` objects), so
a file loaded into the review matches the segments it creates. Torch-free.
"""

from __future__ import annotations

import numpy as np

from ..io.seg_nrrd import Segment
from ..terminology import PE_PSEUDOMASK, PE_SEGMENTER, PULMONARY_ARTERIES, SegmentSpec

#: the file's segments, in file order
ANALYSIS_SEGMENTS: tuple[SegmentSpec, ...] = (PE_PSEUDOMASK, PE_SEGMENTER, PULMONARY_ARTERIES)
SOURCE_TAG = "PELabelUp.Source"


def analysis_segments(pseudomask: np.ndarray, segmentation: np.ndarray, arteries: np.ndarray, *,
                      segmentation_source: str, territory_source: str = "artery model") -> list[Segment]:
    """The three segments of an analysis, ``(Z, Y, X)`` 0/1 masks on the input grid, in file order.

    ``segmentation_source`` (``segmenter`` or why it is a copy of the pseudo-mask) is stored as the
    ``PELabelUp.Source`` tag of the "PE segmenter" segment, ``territory_source`` (the artery model, or the mask
    given instead) as that of "Pulmonary arteries".
    """
    sources = ("pseudomask", segmentation_source, territory_source)
    masks = (pseudomask, segmentation, arteries)
    return [Segment(segment_id=spec.segment_id, name=spec.name, mask=np.asarray(mask) != 0, color=spec.color,
                    terminology=spec.terminology, tags={SOURCE_TAG: source})
            for spec, mask, source in zip(ANALYSIS_SEGMENTS, masks, sources, strict=True)]
