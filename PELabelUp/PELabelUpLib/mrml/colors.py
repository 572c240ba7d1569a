"""Perceptual colour tables for heatmaps, filled from matplotlib's colormaps.

The ``slicer-core`` wheel ships none of Slicer's colour files (Inferno, Viridis... are missing there), so the
heatmap's colour node is built here, the same way in Slicer and headless. Matplotlib's colormap registry is
used without pyplot (no GUI backend); it is imported on first use, and in a Slicer without matplotlib the
application's own colour node of that name (``Inferno``...) is used instead.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import slicer

PerceptualMap = Literal["inferno", "magma", "plasma", "viridis", "cividis", "turbo"]
PERCEPTUAL_MAPS: tuple[str, ...] = ("inferno", "magma", "plasma", "viridis", "cividis", "turbo")
COLOR_NODE_PREFIX = "PELabelUp "

log = logging.getLogger(__name__)


def colormap_rgba(name: PerceptualMap, n_colors: int = 256) -> np.ndarray:
    """``(n_colors, 4)`` RGBA in [0, 1] sampled evenly from a matplotlib colormap."""
    if name not in PERCEPTUAL_MAPS:
        raise ValueError(f"unknown colour map {name!r}, expected one of {', '.join(PERCEPTUAL_MAPS)}")
    if int(n_colors) != n_colors or not 2 <= n_colors <= 4096:
        raise ValueError(f"n_colors must be an integer in 2..4096, got {n_colors!r}")
    import matplotlib  # here: Slicer's Python may lack it (see perceptual_color_node)

    return np.asarray(matplotlib.colormaps[name](np.linspace(0.0, 1.0, int(n_colors))), dtype=float)


def perceptual_color_node(scene: slicer.vtkMRMLScene, name: PerceptualMap = "inferno",
                          n_colors: int = 256) -> slicer.vtkMRMLColorTableNode:
    """The scene's colour table node for ``name`` (``"PELabelUp inferno"``...), created on first use.

    Returns:
        a ``vtkMRMLColorTableNode`` of type User with ``n_colors`` entries, index 0 = value at the lower end of
        the display window; the same node again on later calls with the same name and size. Without
        matplotlib, Slicer's own node of that name (``"Inferno"``...) when the scene has one.

    Raises:
        ValueError: unknown colour map or bad ``n_colors``.
        ImportError: no matplotlib and no such colour node in the scene.
    """
    node_name = f"{COLOR_NODE_PREFIX}{name}"
    existing = scene.GetFirstNodeByName(node_name)
    if isinstance(existing, slicer.vtkMRMLColorTableNode) and existing.GetNumberOfColors() == n_colors:
        return existing
    try:
        rgba = colormap_rgba(name, n_colors)
    except ImportError:
        builtin = scene.GetFirstNodeByName(name.capitalize())
        if isinstance(builtin, slicer.vtkMRMLColorNode):
            log.info("matplotlib missing: using the scene's own %r colour node", builtin.GetName())
            return builtin
        raise
    node = slicer.vtkMRMLColorTableNode()
    node.SetName(node_name)
    node.SetTypeToUser()
    node.SetNumberOfColors(len(rgba))
    for index, (r, g, b, a) in enumerate(rgba):
        node.SetColor(index, f"{name} {index}", float(r), float(g), float(b), float(a))
    node.SetAttribute("Category", "PELabelUp")
    scene.AddNode(node)
    return node
