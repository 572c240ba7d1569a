"""MRML (3D Slicer scene) side of PELabelUp: analysis results into a scene, corrections out, pictures.

Every function takes the scene or :class:`SlicerLogics` as an argument, never ``slicer.app``, so the same
code runs inside Slicer and on the ``slicer-core`` wheel (:func:`create_headless_scene`).
"""

from __future__ import annotations

from ..terminology import PE_PSEUDOMASK, PE_SEGMENTER, PULMONARY_ARTERIES, SegmentSpec
from .app import SlicerLogics, create_headless_scene
from .colors import perceptual_color_node
from .display import (
    set_ct_window,
    set_heatmap_opacity,
    set_heatmap_threshold,
    set_heatmap_window,
    style_heatmap,
)
from .results import AnalysisRecord, ReviewNodes, load_analysis, load_ct_node, read_analysis_record
from .segments import add_segmentation, corrected_mask, set_segment_mask
from .tables import center_views_on, emboli_table, embolus_ras, slice_probability_chart
from .views import jump_slices_to, jump_to_slice, show_layers, slice_position_ras

__all__ = [
    "PE_PSEUDOMASK",
    "PE_SEGMENTER",
    "PULMONARY_ARTERIES",
    "AnalysisRecord",
    "ReviewNodes",
    "SegmentSpec",
    "SlicerLogics",
    "add_segmentation",
    "center_views_on",
    "corrected_mask",
    "create_headless_scene",
    "emboli_table",
    "embolus_ras",
    "jump_slices_to",
    "jump_to_slice",
    "load_analysis",
    "load_ct_node",
    "perceptual_color_node",
    "read_analysis_record",
    "set_ct_window",
    "set_heatmap_opacity",
    "set_heatmap_threshold",
    "set_heatmap_window",
    "set_segment_mask",
    "show_layers",
    "slice_position_ras",
    "slice_probability_chart",
    "style_heatmap",
]
