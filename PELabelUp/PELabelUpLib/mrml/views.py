"""Slice views: which volumes they show, where they look (RAS mm), and fitting them to the data.

Everything acts on the scene's slice nodes and slice composite nodes, so it works in Slicer (whose views
observe those nodes) and headless (where :mod:`.render` turns them into pictures).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import slicer

from .app import SlicerLogics
from .grid import geometry_of, ijk_to_ras, index_to_ras


def slice_nodes(scene: slicer.vtkMRMLScene,
                layout_names: Iterable[str] | None = None) -> list[slicer.vtkMRMLSliceNode]:
    """The scene's slice nodes (all, or those whose layout name is in ``layout_names``), by layout name."""
    nodes = [scene.GetNthNodeByClass(n, "vtkMRMLSliceNode")
             for n in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceNode"))]
    wanted = None if layout_names is None else set(layout_names)
    return sorted((n for n in nodes if wanted is None or n.GetLayoutName() in wanted), key=lambda n: n.GetLayoutName())


def composite_nodes(scene: slicer.vtkMRMLScene) -> list[slicer.vtkMRMLSliceCompositeNode]:
    """The scene's slice composite nodes (one per slice view: background, foreground and label layers)."""
    return [scene.GetNthNodeByClass(n, "vtkMRMLSliceCompositeNode")
            for n in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode"))]


def show_layers(scene: slicer.vtkMRMLScene, background: slicer.vtkMRMLVolumeNode | None,
                foreground: slicer.vtkMRMLVolumeNode | None = None, foreground_opacity: float | None = None,
                label: slicer.vtkMRMLLabelMapVolumeNode | None = None) -> None:
    """Set the layers of every slice view: background (the CT), foreground (the heatmap), label.

    ``None`` clears a layer; ``foreground_opacity`` in [0, 1] is left unchanged when ``None``.
    """
    if foreground_opacity is not None and not 0.0 <= foreground_opacity <= 1.0:
        raise ValueError(f"foreground opacity must be in [0, 1], got {foreground_opacity}")
    for node in composite_nodes(scene):
        node.SetBackgroundVolumeID(background.GetID() if background is not None else None)
        node.SetForegroundVolumeID(foreground.GetID() if foreground is not None else None)
        node.SetLabelVolumeID(label.GetID() if label is not None else None)
        if foreground_opacity is not None:
            node.SetForegroundOpacity(float(foreground_opacity))


def fit_views(logics: SlicerLogics) -> None:
    """Fit every slice view to its background volume and snap its offset to a voxel plane (Slicer's reset)."""
    for logic in logics.slice_logics.values():
        logic.FitSliceToAll()
        logic.SnapSliceOffsetToIJK()


def slice_position_ras(volume_node: slicer.vtkMRMLVolumeNode, k: float) -> np.ndarray:
    """RAS mm of the centre of index slice ``k`` (the ``(i, j)`` centre of the grid, index ``k``)."""
    size = geometry_of(volume_node).size
    if not -0.5 <= k <= size[2] - 0.5:
        raise ValueError(f"slice index {k} outside 0..{size[2] - 1} of {volume_node.GetName()!r}")
    return index_to_ras(volume_node, np.array([(size[0] - 1) / 2.0, (size[1] - 1) / 2.0, float(k)]))


def slice_positions_mm(volume_node: slicer.vtkMRMLVolumeNode) -> np.ndarray:
    """``(K,)`` position in mm of each index slice along the volume's k axis (a RAS unit vector).

    ``position = slice_centre_ras . k_unit``: the offset a slice view aligned with the volume's slices shows
    (for a plain axial CT whose k axis points to the head, the S coordinate).
    """
    m = ijk_to_ras(volume_node)
    k_unit = m[:3, 2] / np.linalg.norm(m[:3, 2])
    size = geometry_of(volume_node).size
    centres = index_to_ras(volume_node, np.column_stack([np.full(size[2], (size[0] - 1) / 2.0),
                                                         np.full(size[2], (size[1] - 1) / 2.0),
                                                         np.arange(size[2], dtype=float)]))
    return centres @ k_unit


def jump_slices_to(scene: slicer.vtkMRMLScene, ras_mm: Sequence[float], *, centered: bool = True,
                   layout_names: Iterable[str] | None = None) -> None:
    """Move every slice view (or those named) so that its plane passes through ``ras_mm``.

    ``centered`` also pans each view so the point is in its middle (``JumpSliceByCentering``); otherwise only the
    slice offset changes (``JumpSliceByOffsetting``).
    """
    r, a, s = (float(v) for v in ras_mm)
    if not all(np.isfinite((r, a, s))):
        raise ValueError(f"RAS position must be finite, got {tuple(ras_mm)}")
    for node in slice_nodes(scene, layout_names):
        if centered:
            node.JumpSliceByCentering(r, a, s)
        else:
            node.JumpSliceByOffsetting(r, a, s)


def jump_to_slice(scene: slicer.vtkMRMLScene, volume_node: slicer.vtkMRMLVolumeNode, k: int) -> np.ndarray:
    """Show index slice ``k`` of the volume in every view (the target of a pick in the slice plot); returns it (RAS)."""
    ras = slice_position_ras(volume_node, k)
    jump_slices_to(scene, ras, centered=False)
    return ras


def slice_plane(node: slicer.vtkMRMLSliceNode) -> tuple[np.ndarray, np.ndarray]:
    """A slice view's plane: ``(centre RAS mm, unit normal RAS)`` from its SliceToRAS matrix."""
    m = node.GetSliceToRAS()
    centre = np.array([m.GetElement(r, 3) for r in range(3)])
    normal = np.array([m.GetElement(r, 2) for r in range(3)])
    return centre, normal / np.linalg.norm(normal)
