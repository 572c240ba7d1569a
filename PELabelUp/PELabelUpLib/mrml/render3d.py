"""Headless pictures of a segmentation's closed surfaces, as a 3-D view shows them.

The surfaces are the segmentation node's own closed-surface representation (what Slicer's 3-D view draws, see
:func:`~.segments.add_segmentation` ``surfaces=True``), coloured and see-through as its display node says
(segment colour, 3-D visibility and opacity); VTK renders them offscreen with depth peeling, so the emboli show
inside the see-through arteries. The camera looks from the patient's front (anterior; the patient's right on the
picture's left, head up) or from another side, at the surfaces' bounds. No Slicer application is needed.
"""

from __future__ import annotations

import numpy as np
import slicer
import vtk
from vtkmodules.util import numpy_support

SURFACE = "Closed surface"
#: camera direction (RAS, from the surfaces towards the camera) and view-up of each named view
VIEWS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "anterior": ((0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    "posterior": ((0.0, -1.0, 0.0), (0.0, 0.0, 1.0)),
    "left": ((-1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    "right": ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    "superior": ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0)),
}
BACKGROUND = (0.0, 0.0, 0.0)


def _actors(node: slicer.vtkMRMLSegmentationNode) -> list[vtk.vtkActor]:
    segmentation, display = node.GetSegmentation(), node.GetDisplayNode()
    actors = []
    for n in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(n)
        if display is not None and not (display.GetSegmentVisibility(segment_id)
                                        and display.GetSegmentVisibility3D(segment_id)):
            continue
        surface = segmentation.GetSegment(segment_id).GetRepresentation(SURFACE)
        if surface is None or surface.GetNumberOfPolys() == 0:
            continue
        mapper = vtk.vtkPolyDataMapper()
        mapper.SetInputData(surface)
        mapper.ScalarVisibilityOff()
        actor = vtk.vtkActor()
        actor.SetMapper(mapper)
        actor.GetProperty().SetColor(segmentation.GetSegment(segment_id).GetColor())
        opacity = 1.0 if display is None else display.GetSegmentOpacity3D(segment_id) * display.GetOpacity3D()
        actor.GetProperty().SetOpacity(opacity)
        actors.append(actor)
    return actors


def render_surfaces(node: slicer.vtkMRMLSegmentationNode, *, size_px: tuple[int, int] = (600, 500),
                    view: str = "anterior", zoom: float = 1.0) -> np.ndarray:
    """RGBA picture ``uint8 (H, W, 4)`` (top row first) of the node's visible closed surfaces from ``view``.

    Raises:
        ValueError: an unknown view, or a segmentation without closed surfaces (make them first, e.g.
            ``node.CreateClosedSurfaceRepresentation()``).
    """
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}: one of {sorted(VIEWS)}")
    if not node.GetSegmentation().ContainsRepresentation(SURFACE):
        raise ValueError(f"segmentation {node.GetName()!r} has no closed surfaces to render")
    renderer = vtk.vtkRenderer()
    renderer.SetBackground(*BACKGROUND)
    renderer.SetUseDepthPeeling(True)
    renderer.SetMaximumNumberOfPeels(8)
    for actor in _actors(node):
        renderer.AddActor(actor)
    window = vtk.vtkRenderWindow()
    window.SetOffScreenRendering(True)
    window.SetAlphaBitPlanes(True)
    window.SetMultiSamples(0)  # depth peeling needs single-sampled buffers
    window.SetSize(*size_px)
    window.AddRenderer(renderer)
    towards, up = VIEWS[view]
    camera = renderer.GetActiveCamera()
    camera.SetFocalPoint(0.0, 0.0, 0.0)
    camera.SetPosition(*towards)
    camera.SetViewUp(*up)
    renderer.ResetCamera()
    camera.Zoom(zoom)
    window.Render()
    grab = vtk.vtkWindowToImageFilter()
    grab.SetInput(window)
    grab.SetInputBufferTypeToRGBA()
    grab.ReadFrontBufferOff()
    grab.Update()
    image = grab.GetOutput()
    width, height, _ = image.GetDimensions()
    rgba = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, 4)
    window.Finalize()
    return np.ascontiguousarray(rgba[::-1])
