"""Headless pictures of what Slicer's slice views show, from the real scene, without a render window.

Each ``vtkMRMLSliceLogic`` reslices its layers (background CT, foreground heatmap, label) through its slice
node's plane and blends them into an RGBA image, honouring window/level, colour tables, thresholds and
opacities. Segments reach the picture as outlines: they are exported (in the given order, later ones on top)
to a temporary labelmap coloured like the segments and shown in the label layer with Slicer's label outline
mode; the scene's layers and settings are restored afterwards. (Inside Slicer segments are drawn by the
segmentation displayable manager instead; fill and outline look alike.)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import slicer
from vtkmodules.util import numpy_support
from vtkmodules.vtkCommonCore import vtkStringArray
from vtkmodules.vtkIOImage import vtkPNGWriter

from .app import SlicerLogics
from .grid import image_from_array
from .views import composite_nodes, slice_nodes

log = logging.getLogger(__name__)


def slice_view_rgba(logic: slicer.vtkMRMLSliceLogic) -> np.ndarray:
    """The slice logic's blended picture as ``uint8 (H, W, 4)`` RGBA, top row first (as on screen)."""
    connection = logic.GetImageDataConnection()
    if connection is None:
        raise RuntimeError(f"slice view {logic.GetSliceNode().GetLayoutName()!r} has no image pipeline")
    producer = connection.GetProducer()
    producer.Update()
    image = producer.GetOutputDataObject(connection.GetIndex())
    width, height, _ = image.GetDimensions()
    scalars = image.GetPointData().GetScalars()
    if scalars is None or width == 0 or height == 0:
        raise RuntimeError(f"slice view {logic.GetSliceNode().GetLayoutName()!r} produced no picture")
    rgba = numpy_support.vtk_to_numpy(scalars).reshape(height, width, scalars.GetNumberOfComponents())
    if rgba.shape[2] == 3:
        rgba = np.concatenate([rgba, np.full((height, width, 1), 255, np.uint8)], axis=2)
    return np.ascontiguousarray(rgba[::-1])  # VTK's first row is the bottom one


def segments_labelmap(logics: SlicerLogics, segmentation_node: slicer.vtkMRMLSegmentationNode,
                      reference_volume: slicer.vtkMRMLVolumeNode,
                      segment_ids: Sequence[str] | None = None) -> slicer.vtkMRMLLabelMapVolumeNode:
    """A labelmap volume of the segments (on the reference grid, label n = n-th segment, later on top), whose
    colour table holds the segments' colours."""
    ids = list(segment_ids) if segment_ids is not None else list(segmentation_node.GetSegmentation().GetSegmentIDs())
    labelmap = logics.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", f"{segmentation_node.GetName()} outlines")
    array = vtkStringArray()
    for segment_id in ids:
        array.InsertNextValue(segment_id)
    if not logics.segmentations.ExportSegmentsToLabelmapNode(segmentation_node, array, labelmap, reference_volume):
        logics.scene.RemoveNode(labelmap)
        raise RuntimeError(f"segments {ids} could not be exported to a labelmap")
    colors = slicer.vtkMRMLColorTableNode()
    colors.SetName(f"{labelmap.GetName()} colours")
    colors.SetTypeToUser()
    colors.SetNumberOfColors(len(ids) + 1)
    colors.SetColor(0, "background", 0.0, 0.0, 0.0, 0.0)
    for label, segment_id in enumerate(ids, start=1):
        segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
        colors.SetColor(label, segment.GetName(), *segment.GetColor(), 1.0)
    colors.SetHideFromEditors(True)
    logics.scene.AddNode(colors)
    labelmap.GetDisplayNode().SetAndObserveColorNodeID(colors.GetID())
    return labelmap


@contextmanager
def label_outlines(logics: SlicerLogics, segmentation_node: slicer.vtkMRMLSegmentationNode | None,
                   reference_volume: slicer.vtkMRMLVolumeNode | None,
                   segment_ids: Sequence[str] | None = None) -> Iterator[None]:
    """Show the segments as label-layer outlines in every slice view for the block; restore the layers after."""
    if segmentation_node is None or reference_volume is None:
        yield
        return
    saved = [(node, node.GetLabelVolumeID(), node.GetLabelOpacity()) for node in composite_nodes(logics.scene)]
    outlines = [(node, node.GetUseLabelOutline()) for node in slice_nodes(logics.scene)]
    existing = _node_ids(logics.scene)
    labelmap = segments_labelmap(logics, segmentation_node, reference_volume, segment_ids)
    try:
        for node, _, _ in saved:
            node.SetLabelVolumeID(labelmap.GetID())
            node.SetLabelOpacity(1.0)
        for node, _ in outlines:
            node.SetUseLabelOutline(True)
        yield
    finally:
        for node, label_id, opacity in saved:
            node.SetLabelVolumeID(label_id)
            node.SetLabelOpacity(opacity)
        for node, use in outlines:
            node.SetUseLabelOutline(use)
        for node_id in _node_ids(logics.scene) - existing:  # the labelmap, its display node and colours
            node = logics.scene.GetNodeByID(node_id)
            if node is not None:
                logics.scene.RemoveNode(node)


def _node_ids(scene: slicer.vtkMRMLScene) -> set[str]:
    return {scene.GetNthNode(n).GetID() for n in range(scene.GetNumberOfNodes())}


def render_views(logics: SlicerLogics, layout_names: Sequence[str] = ("Red", "Yellow", "Green"), *,
                 segmentation_node: slicer.vtkMRMLSegmentationNode | None = None,
                 reference_volume: slicer.vtkMRMLVolumeNode | None = None,
                 segment_ids: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """RGBA pictures ``uint8 (H, W, 4)`` of the named slice views, with segment outlines when a segmentation
    (and its reference volume) is given.

    Raises:
        ValueError: a layout name without a slice logic.
    """
    unknown = [name for name in layout_names if name not in logics.slice_logics]
    if unknown:
        raise ValueError(f"no slice view named {unknown}; the scene has {sorted(logics.slice_logics)}")
    with label_outlines(logics, segmentation_node, reference_volume, segment_ids):
        return {name: slice_view_rgba(logics.slice_logics[name]) for name in layout_names}


def over_black(rgba: np.ndarray) -> np.ndarray:
    """An RGBA picture composited over black, as a slice view's renderer shows it (opaque RGBA out)."""
    rgba = np.asarray(rgba)
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    out = np.empty_like(rgba)
    out[..., :3] = np.round(rgba[..., :3].astype(np.float32) * alpha).astype(np.uint8)
    out[..., 3] = 255
    return out


def write_png(rgba: np.ndarray, path: str | Path) -> Path:
    """Write an ``(H, W, 3|4)`` uint8 picture (top row first) as PNG with VTK's writer; returns the path."""
    rgba = np.asarray(rgba)
    if rgba.ndim != 3 or rgba.shape[2] not in (3, 4) or rgba.dtype != np.uint8:
        raise ValueError(f"expected a uint8 (H, W, 3|4) picture, got {rgba.dtype} {rgba.shape}")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    height, width, components = rgba.shape
    flat = rgba[::-1].reshape(1, height, width * components)  # bottom row first for VTK
    image = image_from_array(flat)
    image.SetDimensions(width, height, 1)
    image.GetPointData().GetScalars().SetNumberOfComponents(components)
    writer = vtkPNGWriter()
    writer.SetInputData(image)
    writer.SetFileName(str(out))
    writer.Write()
    if writer.GetErrorCode():
        raise OSError(f"{out}: PNG could not be written (VTK error code {writer.GetErrorCode()})")
    return out


def render_png(logics: SlicerLogics, path: str | Path, layout_names: Sequence[str] = ("Red", "Yellow", "Green"),
               *, segmentation_node: slicer.vtkMRMLSegmentationNode | None = None,
               reference_volume: slicer.vtkMRMLVolumeNode | None = None, gap_px: int = 4) -> Path:
    """The named slice views side by side (``gap_px`` black pixels apart) in one PNG; returns its path."""
    pictures = render_views(logics, layout_names, segmentation_node=segmentation_node,
                            reference_volume=reference_volume)
    height = max(p.shape[0] for p in pictures.values())
    parts = []
    for n, picture in enumerate(pictures.values()):
        pad = np.zeros((height - picture.shape[0], picture.shape[1], 4), np.uint8)
        parts.append(np.concatenate([picture, pad], axis=0))
        if n < len(pictures) - 1 and gap_px > 0:
            parts.append(np.zeros((height, gap_px, 4), np.uint8))
    combined = over_black(np.concatenate(parts, axis=1))
    log.debug("rendered %s into %s", ", ".join(pictures), path)
    return write_png(combined, path)
