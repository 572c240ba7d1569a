"""Segmentation nodes from numpy masks and back, exact on the reference volume's grid.

Masks are ``(Z, Y, X)`` arrays on the reference volume's grid (the input CT). They enter a segment as a
``vtkOrientedImageData`` carrying the volume's IJK->RAS matrix, through
``vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment`` (what the Segment Editor calls), and leave it
resampled (nearest neighbour) onto the same grid, so a mask survives the round trip voxel for voxel on any
grid, oblique and anisotropic ones included, and whatever extent or shared layer the editor left the segment in.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Literal

import numpy as np
import slicer
import vtk

from ..terminology import SegmentSpec
from .grid import geometry_of, ijk_to_ras, numpy_to_matrix, voxels

log = logging.getLogger(__name__)

EditMode = Literal["paint", "erase", "replace"]
_LOGIC = slicer.vtkSlicerSegmentationsModuleLogic


def _check_mask(mask: np.ndarray, reference_volume: slicer.vtkMRMLVolumeNode) -> np.ndarray:
    shape = geometry_of(reference_volume).shape_zyx
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise ValueError(f"mask shape {mask.shape} does not match the (Z, Y, X) grid {shape} of "
                         f"{reference_volume.GetName()!r}")
    if mask.dtype != np.bool_ and not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(f"mask must be bool or integer (0/1), got {mask.dtype}")
    return mask


def oriented_image(mask: np.ndarray, reference_volume: slicer.vtkMRMLVolumeNode) -> slicer.vtkOrientedImageData:
    """A uint8 0/1 ``vtkOrientedImageData`` of a ``(Z, Y, X)`` mask on the reference volume's grid."""
    mask = _check_mask(mask, reference_volume)
    image = slicer.vtkOrientedImageData()
    nz, ny, nx = mask.shape
    image.SetDimensions(nx, ny, nz)
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    image.SetImageToWorldMatrix(numpy_to_matrix(ijk_to_ras(reference_volume)))
    voxels(image)[...] = mask != 0
    return image


def add_segment(segmentation_node: slicer.vtkMRMLSegmentationNode, spec: SegmentSpec) -> str:
    """Add an empty segment with the spec's ID, name, colour and terminology (replacing one with that ID)."""
    segmentation = segmentation_node.GetSegmentation()
    if segmentation.GetSegment(spec.segment_id) is not None:
        segmentation.RemoveSegment(spec.segment_id)
    segment_id = segmentation.AddEmptySegment(spec.segment_id, spec.name, list(spec.color))
    segmentation.GetSegment(segment_id).SetTerminology(spec.terminology)
    display = segmentation_node.GetDisplayNode()
    if display is not None:
        display.SetSegmentOpacity2DFill(segment_id, float(spec.fill_opacity_2d))
        display.SetSegmentOpacity3D(segment_id, float(spec.opacity_3d))
    return segment_id


def set_segment_mask(segmentation_node: slicer.vtkMRMLSegmentationNode, segment_id: str, mask: np.ndarray,
                     reference_volume: slicer.vtkMRMLVolumeNode, mode: EditMode = "replace") -> None:
    """Write a ``(Z, Y, X)`` mask (on the reference volume's grid) into a segment, as the Segment Editor does.

    Args:
        mode: ``"replace"`` (the segment becomes the mask), ``"paint"`` (the mask's voxels are added) or
            ``"erase"`` (the mask's voxels are removed).

    Raises:
        ValueError: unknown segment or mode, mask of the wrong shape or type.
        RuntimeError: the segmentations logic refused the labelmap.
    """
    if segmentation_node.GetSegmentation().GetSegment(segment_id) is None:
        raise ValueError(f"segment {segment_id!r} not in segmentation {segmentation_node.GetName()!r}")
    mask = _check_mask(mask, reference_volume)
    if mode == "replace":
        image, merge = oriented_image(mask, reference_volume), _LOGIC.MODE_REPLACE
    elif mode == "paint":
        image, merge = oriented_image(mask, reference_volume), _LOGIC.MODE_MERGE_MAX
    elif mode == "erase":  # the Segment Editor's erase: the inverted modifier, merged by minimum
        image, merge = oriented_image(mask == 0, reference_volume), _LOGIC.MODE_MERGE_MIN
    else:
        raise ValueError(f"mode must be 'replace', 'paint' or 'erase', got {mode!r}")
    if not _LOGIC.SetBinaryLabelmapToSegment(image, segmentation_node, segment_id, merge, image.GetExtent()):
        raise RuntimeError(f"the segmentations logic refused the labelmap for segment {segment_id!r}")


def add_segmentation(scene: slicer.vtkMRMLScene, reference_volume: slicer.vtkMRMLVolumeNode,
                     masks: Mapping[SegmentSpec, np.ndarray], name: str, *,
                     surfaces: bool = False) -> slicer.vtkMRMLSegmentationNode:
    """A segmentation node, its reference geometry set to ``reference_volume``, one segment per mask.

    Args:
        masks: segment spec -> ``(Z, Y, X)`` 0/1 mask on the reference volume's grid; segments are added in
            the mapping's order.
        name: the node's name.
        surfaces: also make the closed-surface representation, which 3-D views show (what the Segment Editor's
            *Show 3D* does); the binary labelmap stays the source representation, which edits change.
    """
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume)
    for spec, mask in masks.items():
        segment_id = add_segment(node, spec)
        set_segment_mask(node, segment_id, mask, reference_volume)
        log.debug("segment %s: %d voxels", spec.name, int(np.count_nonzero(mask)))
    if surfaces and not node.CreateClosedSurfaceRepresentation():
        log.warning("segmentation %r: no closed-surface representation (3-D views stay empty)", name)
    return node


def _reference_image(reference_volume: slicer.vtkMRMLVolumeNode) -> slicer.vtkOrientedImageData:
    image = slicer.vtkOrientedImageData()
    image.SetExtent(reference_volume.GetImageData().GetExtent())
    image.SetImageToWorldMatrix(numpy_to_matrix(ijk_to_ras(reference_volume)))
    return image


def corrected_mask(segmentation_node: slicer.vtkMRMLSegmentationNode, segment_id: str,
                   reference_volume_node: slicer.vtkMRMLVolumeNode) -> np.ndarray:
    """A segment as a ``bool (Z, Y, X)`` mask on the reference volume's grid (e.g. after a radiologist's edit).

    The segment's binary labelmap (whatever its extent, layer or geometry) is resampled onto the reference
    volume's grid with nearest-neighbour interpolation and compared with the segment's label value (segments
    that do not overlap share one layer, each with its own value); voxels outside the segment's extent are False.

    Raises:
        ValueError: unknown segment.
        RuntimeError: the segment has no binary labelmap and none can be made.
    """
    if segmentation_node.GetSegmentation().GetSegment(segment_id) is None:
        raise ValueError(f"segment {segment_id!r} not in segmentation {segmentation_node.GetName()!r}")
    segment_image = slicer.vtkOrientedImageData()
    if not _LOGIC.GetSegmentBinaryLabelmapRepresentation(segmentation_node, segment_id, segment_image):
        raise RuntimeError(f"segment {segment_id!r} has no binary labelmap representation")
    shape = geometry_of(reference_volume_node).shape_zyx
    extent = segment_image.GetExtent()
    if extent[1] < extent[0] or extent[3] < extent[2] or extent[5] < extent[4]:  # empty segment
        return np.zeros(shape, dtype=bool)
    resampled = slicer.vtkOrientedImageData()
    reference = _reference_image(reference_volume_node)
    if not slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
            segment_image, reference, resampled, False, False):
        raise RuntimeError(f"segment {segment_id!r} could not be resampled onto {reference_volume_node.GetName()!r}")
    label_value = segmentation_node.GetSegmentation().GetSegment(segment_id).GetLabelValue()
    return _on_reference_extent(resampled, reference_volume_node.GetImageData().GetExtent(), shape, label_value)


def _on_reference_extent(image: slicer.vtkOrientedImageData, extent: tuple[int, ...],
                         shape: tuple[int, int, int], label_value: int) -> np.ndarray:
    """Where the image equals ``label_value``, placed into a False array covering ``extent`` (the image may
    cover part of it). Segments sharing a layer hold different label values in one image."""
    out = np.zeros(shape, dtype=bool)
    got = image.GetExtent()
    lo = [max(got[2 * a], extent[2 * a]) for a in range(3)]
    hi = [min(got[2 * a + 1], extent[2 * a + 1]) for a in range(3)]
    if any(h < lo_ for lo_, h in zip(lo, hi, strict=True)):
        return out
    values = voxels(image)
    src = tuple(slice(lo[a] - got[2 * a], hi[a] - got[2 * a] + 1) for a in (2, 1, 0))
    dst = tuple(slice(lo[a] - extent[2 * a], hi[a] - extent[2 * a] + 1) for a in (2, 1, 0))
    out[dst] = values[src] == label_value
    return out
