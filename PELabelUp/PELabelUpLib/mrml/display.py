"""Display settings of the CT (window/level in HU) and of the heatmap (colours, window 0..1, threshold, opacity).

The heatmap is a float volume in [0, 1] shown as the slice views' foreground layer: a perceptual colour table
over the window 0..1, voxels below the lower threshold transparent (``ApplyThreshold``), and the layer's
opacity set on every slice composite node.
"""

from __future__ import annotations

import slicer

from .colors import PerceptualMap, perceptual_color_node
from .views import composite_nodes

CTA_WINDOW_HU = 700.0  # a common CTPA reading window: clot (20-90 HU) against opacified blood (250-500 HU)
CTA_LEVEL_HU = 100.0


def _display(volume_node: slicer.vtkMRMLScalarVolumeNode) -> slicer.vtkMRMLScalarVolumeDisplayNode:
    display = volume_node.GetDisplayNode()
    if display is None:
        volume_node.CreateDefaultDisplayNodes()
        display = volume_node.GetDisplayNode()
    return display


def set_ct_window(ct_node: slicer.vtkMRMLScalarVolumeNode, window_hu: float = CTA_WINDOW_HU,
                  level_hu: float = CTA_LEVEL_HU) -> None:
    """Fixed window/level (HU) on the CT's display node (auto window/level off)."""
    if not window_hu > 0:
        raise ValueError(f"window must be positive HU, got {window_hu}")
    display = _display(ct_node)
    display.AutoWindowLevelOff()
    display.SetWindowLevel(float(window_hu), float(level_hu))


def style_heatmap(heatmap_node: slicer.vtkMRMLScalarVolumeNode, colormap: PerceptualMap = "inferno",
                  lower_threshold: float = 0.2) -> None:
    """Perceptual colours, window/level mapping 0..1 onto the colour table, and the lower threshold."""
    display = _display(heatmap_node)
    scene = heatmap_node.GetScene()
    display.SetAndObserveColorNodeID(perceptual_color_node(scene, colormap).GetID())
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, 1.0)
    display.SetInterpolate(True)
    set_heatmap_threshold(heatmap_node, lower_threshold)


def set_heatmap_threshold(heatmap_node: slicer.vtkMRMLScalarVolumeNode, lower: float) -> None:
    """Hide heat below ``lower`` (in [0, 1]; 0 shows everything): the foreground is transparent there."""
    if not 0.0 <= lower <= 1.0:
        raise ValueError(f"heatmap threshold must be in [0, 1], got {lower}")
    display = _display(heatmap_node)
    display.AutoThresholdOff()
    display.SetThreshold(float(lower), max(1.0, float(lower)))
    display.SetApplyThreshold(1 if lower > 0.0 else 0)


def set_heatmap_window(heatmap_node: slicer.vtkMRMLScalarVolumeNode, minimum: float = 0.0,
                       maximum: float = 1.0) -> None:
    """Map heat ``minimum..maximum`` onto the colour table (defaults: the full range 0..1)."""
    if not 0.0 <= minimum < maximum <= 1.0:
        raise ValueError(f"heatmap window must satisfy 0 <= minimum < maximum <= 1, got {minimum}, {maximum}")
    display = _display(heatmap_node)
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(float(minimum), float(maximum))


def set_heatmap_opacity(scene: slicer.vtkMRMLScene, opacity: float) -> None:
    """Opacity of the foreground layer (the heatmap) in every slice view, in [0, 1]."""
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"heatmap opacity must be in [0, 1], got {opacity}")
    for node in composite_nodes(scene):
        node.SetForegroundOpacity(float(opacity))
